use vaidya_fhir::search_params::*;
use std::collections::BTreeMap;
#[test]
fn dump() {
    let mut m: BTreeMap<(String,String), Vec<String>> = BTreeMap::new();
    for p in resource_types().iter().flat_map(|t| search_params(t)) {
        if let Some(e) = p.compiled() {
            if p.common && p.base != "Resource" {continue}
            m.entry((p.kind.as_str().into(), format!("{:?}", e.output_type()))).or_default().push(format!("{}.{}", p.base, p.code));
        }
    }
    for (k, v) in m { println!("{:?} {} {:?}", k, v.len(), &v[..v.len().min(6)]); }
}
