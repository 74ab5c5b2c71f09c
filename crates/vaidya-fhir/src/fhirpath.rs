//! The subset of FHIRPath that the R4 SearchParameter expressions use, compiled once and
//! evaluated over `serde_json::Value` resources.
//!
//! Supported: path navigation (with choice elements: `Observation.value` finds `valueQuantity`,
//! `valueString`, ...), the indexer `[n]`, union `|`, `=` and `!=`, `and`, `is` / `as` (operators
//! and functions), and the functions `where`, `exists`, `first`, `resolve`, `ofType`,
//! `extension(url)` and `hasExtension(url)`; string, integer and boolean literals; `$this` and
//! `%resource`. Anything else is refused at compile time with a [`CompileError`].
//!
//! Compilation resolves every navigation step against a [`TypeModel`] (the element types of the
//! StructureDefinitions), so evaluation never looks types up: each step already knows whether it
//! is a choice element and which FHIR type its nodes have. Evaluation walks each path depth-first,
//! writing matches straight into the caller's vector; only `where` criteria, `exists`, `first` and
//! indexers need a temporary collection.
//!
//! Deliberate simplifications, harmless for search indexing:
//! * `resolve()` does not fetch anything: it yields the *type* of the referenced resource, taken
//!   from the reference (`Patient/1`, `http://x/fhir/Patient/1`, `#contained-id`) or from
//!   `Reference.type`. That is all `resolve() is Patient` needs.
//! * Union does not remove duplicates; the indexer deduplicates index values instead.
//! * A node whose type is unknown (only possible without a type model) passes `as`/`is` tests of
//!   the right JSON shape, rather than failing them.

use serde_json::Value;
use std::collections::HashMap;
use std::fmt;

// =============================================================================================
// Type model

/// The element types of FHIR resources and data types, as generated into the `types` section of
/// `data/r4-search-params.json`: for each type its base type and the elements it defines itself.
/// Backbone elements are types named by their path (`Observation.component`).
#[derive(Debug, Default)]
pub struct TypeModel {
    types: HashMap<String, TypeDef>,
    /// The types deriving directly from each type, for `is`/`as` tests that accept subtypes.
    derived: HashMap<String, Vec<String>>,
}

#[derive(Debug, Default)]
struct TypeDef {
    base: Option<String>,
    elements: HashMap<String, ElementDef>,
}

/// The declared type of an element.
#[derive(Debug, Clone, PartialEq)]
pub enum ElementDef {
    /// A single type (a data type, a primitive, `Resource`, or a backbone element's path).
    Single(String),
    /// A choice element `name[x]`: the JSON key is the name followed by the capitalised type.
    Choice(Vec<String>),
}

impl TypeModel {
    /// A model that knows no types: navigation is by plain JSON key and nodes are untyped.
    pub fn empty() -> Self {
        Self::default()
    }

    /// Reads the `types` object of the generated data file:
    /// `{"Patient": {"base": "DomainResource", "elements": {"name": "HumanName", "deceased":
    /// ["boolean", "dateTime"], ...}}, ...}`.
    pub fn from_json(types: &Value) -> Result<Self, String> {
        let types = types.as_object().ok_or("`types` is not an object")?;
        let mut model = TypeModel::default();
        for (name, def) in types {
            let base = def.get("base").and_then(Value::as_str).map(str::to_owned);
            let mut elements = HashMap::new();
            if let Some(list) = def.get("elements").and_then(Value::as_object) {
                for (element, ty) in list {
                    let parsed = match ty {
                        Value::String(s) => ElementDef::Single(s.clone()),
                        Value::Array(a) => ElementDef::Choice(
                            a.iter()
                                .map(|t| {
                                    t.as_str()
                                        .map(str::to_owned)
                                        .ok_or("choice type is not a string")
                                })
                                .collect::<Result<_, _>>()?,
                        ),
                        _ => {
                            return Err(format!(
                                "{name}.{element}: type is neither a string nor a list"
                            ));
                        }
                    };
                    elements.insert(element.clone(), parsed);
                }
            }
            if let Some(b) = &base {
                model
                    .derived
                    .entry(b.clone())
                    .or_default()
                    .push(name.clone());
            }
            model.types.insert(name.clone(), TypeDef { base, elements });
        }
        Ok(model)
    }

    pub fn contains(&self, type_name: &str) -> bool {
        self.types.contains_key(type_name)
    }

    /// The element `name` of `type_name`, looked up through the chain of base types.
    pub fn element(&self, type_name: &str, name: &str) -> Option<&ElementDef> {
        let mut current = Some(type_name);
        while let Some(t) = current {
            let def = self.types.get(t)?;
            if let Some(e) = def.elements.get(name) {
                return Some(e);
            }
            current = def.base.as_deref();
        }
        None
    }

    /// Whether `type_name` is `ancestor` or derives from it (`Age` is a `Quantity`, `code` is a
    /// `string`, every resource is a `Resource`).
    pub fn is_subtype(&self, type_name: &str, ancestor: &str) -> bool {
        let mut current = Some(type_name);
        // The chain is short (at most 4 steps in R4); the bound only guards against a cycle.
        for _ in 0..16 {
            match current {
                Some(t) if t == ancestor => return true,
                Some(t) => current = self.types.get(t).and_then(|d| d.base.as_deref()),
                None => return false,
            }
        }
        false
    }

    /// Concrete resource types (those deriving from `Resource`), sorted.
    pub fn resource_types(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self
            .types
            .keys()
            .map(String::as_str)
            .filter(|t| {
                !t.contains('.')
                    && *t != "Resource"
                    && *t != "DomainResource"
                    && self.is_subtype(t, "Resource")
            })
            .collect();
        out.sort_unstable();
        out
    }

    /// `type_name` and every type deriving from it, sorted.
    fn subtypes(&self, type_name: &str) -> Vec<String> {
        let mut out = vec![type_name.to_owned()];
        let mut i = 0;
        // The bound only guards against a (malformed) cycle in the base chains.
        while i < out.len() && i <= self.types.len() {
            if let Some(children) = self.derived.get(&out[i]) {
                out.extend(children.iter().cloned());
            }
            i += 1;
        }
        out.sort_unstable();
        out
    }

    /// The model's name for a type specifier: strips a `FHIR.`/`System.` namespace and maps the
    /// FHIRPath system types to the FHIR primitives (`DateTime` -> `dateTime`), as the R4
    /// expressions mix them (`value.as(DateTime)`).
    fn resolve_type_name(&self, spec: &str) -> Option<String> {
        let bare = spec
            .strip_prefix("FHIR.")
            .or_else(|| spec.strip_prefix("System."))
            .unwrap_or(spec);
        if self.contains(bare) {
            return Some(bare.to_owned());
        }
        let lowered = lower_first(bare);
        self.contains(&lowered).then_some(lowered)
    }
}

fn lower_first(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_ascii_lowercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

fn upper_first(s: &str) -> String {
    let mut chars = s.chars();
    chars
        .next()
        .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
        .unwrap_or_default()
}

// =============================================================================================
// Results

/// One item of an evaluation result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Item<'a> {
    /// A node of the resource (array elements come one by one), with its FHIR type when the
    /// model knows it: from the element definition, from a choice element's key suffix
    /// (`valueQuantity` gives `Quantity`), or from `resourceType` for resources.
    Node {
        value: &'a Value,
        ty: Option<&'a str>,
    },
    /// What `resolve()` gives: the referenced resource's type, if the reference reveals it.
    Resolved {
        resource_type: Option<&'a str>,
    },
    Bool(bool),
    Str(&'a str),
    Int(i64),
}

impl<'a> Item<'a> {
    pub fn value(&self) -> Option<&'a Value> {
        match self {
            Item::Node { value, .. } => Some(value),
            _ => None,
        }
    }

    /// The FHIR type of the item when known (`boolean` for computed booleans).
    pub fn type_name(&self) -> Option<&'a str> {
        match self {
            Item::Node { ty, .. } => *ty,
            Item::Resolved { resource_type } => *resource_type,
            Item::Bool(_) => Some("boolean"),
            Item::Str(_) => Some("string"),
            Item::Int(_) => Some("integer"),
        }
    }

    /// A resource as an item, typed by its `resourceType`: the focus for evaluating a
    /// parameter's expression. Build it once when evaluating many expressions on one resource.
    pub fn resource(value: &'a Value) -> Self {
        Item::Node {
            value,
            ty: get(value, "resourceType").and_then(Value::as_str),
        }
    }
}

/// Objects up to this size are searched linearly: FHIR objects are small, and comparing a few
/// key lengths is cheaper than hashing the key (SipHash) for the map lookup.
const LINEAR_LOOKUP_MAX: usize = 16;

/// `object[key]`: the lookup every navigation step and index value does.
#[inline]
pub(crate) fn get_field<'a>(
    object: &'a serde_json::Map<String, Value>,
    key: &str,
) -> Option<&'a Value> {
    if object.len() > LINEAR_LOOKUP_MAX {
        return object.get(key);
    }
    object
        .iter()
        .find(|(k, _)| k.as_str() == key)
        .map(|(_, v)| v)
}

/// `value[key]` if `value` is an object.
#[inline]
pub(crate) fn get<'a>(value: &'a Value, key: &str) -> Option<&'a Value> {
    match value {
        Value::Object(o) => get_field(o, key),
        _ => None,
    }
}

/// The value of an Extension node (`valueString`, `valueCoding`, ...) with its type, so that
/// parameters defined as `X.extension('url')` can index what the extension carries.
pub fn extension_value(extension: &Value) -> Option<Item<'_>> {
    let object = extension.as_object()?;
    object.iter().find_map(|(key, value)| {
        let suffix = key
            .strip_prefix("value")
            .filter(|s| s.starts_with(|c: char| c.is_ascii_uppercase()))?;
        let ty = PRIMITIVE_SUFFIXES
            .iter()
            .find(|(cap, _)| *cap == suffix)
            .map_or(suffix, |(_, t)| *t);
        Some(Item::Node {
            value,
            ty: Some(ty),
        })
    })
}

/// Choice-key suffixes of the FHIR primitive types and the type names they stand for (complex
/// types are spelled the same in both places).
const PRIMITIVE_SUFFIXES: &[(&str, &str)] = &[
    ("Base64Binary", "base64Binary"),
    ("Boolean", "boolean"),
    ("Canonical", "canonical"),
    ("Code", "code"),
    ("Date", "date"),
    ("DateTime", "dateTime"),
    ("Decimal", "decimal"),
    ("Id", "id"),
    ("Instant", "instant"),
    ("Integer", "integer"),
    ("Markdown", "markdown"),
    ("Oid", "oid"),
    ("PositiveInt", "positiveInt"),
    ("String", "string"),
    ("Time", "time"),
    ("UnsignedInt", "unsignedInt"),
    ("Uri", "uri"),
    ("Url", "url"),
    ("Uuid", "uuid"),
];

/// The parts of a literal reference `[base/]Type/id[/_history/version]` (also `Type?query`
/// conditional references, which have no id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReferenceParts<'a> {
    pub resource_type: &'a str,
    pub id: Option<&'a str>,
    pub version: Option<&'a str>,
    /// Whether a base URL precedes `Type/id`.
    pub absolute: bool,
}

/// Splits a reference string; `None` for `#contained`, `urn:uuid:...`, `urn:oid:...` and
/// anything else that does not end in `Type/id`.
pub fn parse_reference(reference: &str) -> Option<ReferenceParts<'_>> {
    if let Some((ty, _query)) = reference.split_once('?') {
        return is_type_name(ty).then_some(ReferenceParts {
            resource_type: ty,
            id: None,
            version: None,
            absolute: false,
        });
    }
    let (path, version) = match reference.rsplit_once("/_history/") {
        Some((p, v)) if is_id(v) => (p, Some(v)),
        Some(_) => return None,
        None => (reference, None),
    };
    let (prefix, id) = path.rsplit_once('/')?;
    let (base, ty) = match prefix.rsplit_once('/') {
        Some((base, ty)) => (Some(base), ty),
        None => (None, prefix),
    };
    if !is_type_name(ty) || !is_id(id) {
        return None;
    }
    // Anything before `Type/id` must be a base URL, not more path of a relative reference.
    let absolute = match base {
        None => false,
        Some(b) if b.contains("://") => true,
        Some(_) => return None,
    };
    Some(ReferenceParts {
        resource_type: ty,
        id: Some(id),
        version,
        absolute,
    })
}

fn is_type_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_uppercase()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// FHIR ids: 1 to 64 of `[A-Za-z0-9-.]`.
fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

// =============================================================================================
// Compiled expressions

/// A compiled FHIRPath expression.
#[derive(Debug)]
pub struct Expression {
    source: String,
    root: Expr,
    output_type: Option<String>,
    warnings: Vec<String>,
}

/// Why an expression could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompileError {
    pub message: String,
    /// Byte offset in the source.
    pub position: usize,
}

impl fmt::Display for CompileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (at byte {})", self.message, self.position)
    }
}

impl std::error::Error for CompileError {}

impl Expression {
    /// Checks syntax and the supported subset only, without types: navigation is by plain JSON
    /// key, so choice elements are not found. For tests and diagnostics.
    pub fn parse(source: &str) -> Result<Expression, CompileError> {
        Self::compile_relative(source, &TypeModel::empty(), None, None)
    }

    /// Compiles an expression evaluated on a resource of type `resource_type` (or on any
    /// resource, for `Resource`).
    pub fn compile(
        source: &str,
        model: &TypeModel,
        resource_type: &str,
    ) -> Result<Expression, CompileError> {
        Self::compile_relative(source, model, Some(resource_type), Some(resource_type))
    }

    /// Compiles an expression evaluated on nodes of type `focus_type` inside a resource of type
    /// `resource_type` (composite components: `value.as(Quantity)` on an `Observation.component`).
    /// Unknown types (`None`) make navigation untyped.
    pub fn compile_relative(
        source: &str,
        model: &TypeModel,
        resource_type: Option<&str>,
        focus_type: Option<&str>,
    ) -> Result<Expression, CompileError> {
        let syntax = Parser::new(source)?.parse_all()?;
        let mut compiler = Compiler {
            model,
            resource_type: resource_type.map(str::to_owned),
            warnings: Vec::new(),
        };
        let (root, output_type) = compiler.compile(&syntax, &focus_type.map(str::to_owned))?;
        Ok(Expression {
            source: source.to_owned(),
            root,
            output_type,
            warnings: compiler.warnings,
        })
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Navigation the model could not type (an element or type name it does not know). Such
    /// steps still work by plain JSON key, but usually mean a mistake in the expression.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The static type of the results when all of them have the same known type.
    pub fn output_type(&self) -> Option<&str> {
        self.output_type.as_deref()
    }

    /// Evaluates on `resource` (the focus and `%resource`).
    pub fn evaluate<'a>(&'a self, resource: &'a Value) -> Vec<Item<'a>> {
        let mut out = Vec::new();
        self.evaluate_into(resource, &mut out);
        out
    }

    /// Like [`evaluate`](Self::evaluate), appending to `out` (reuse it across calls to avoid
    /// allocating).
    pub fn evaluate_into<'a>(&'a self, resource: &'a Value, out: &mut Vec<Item<'a>>) {
        self.evaluate_on(resource, Item::resource(resource), out);
    }

    /// Evaluates with `focus` as the context item inside `resource` (for composite components).
    pub fn evaluate_on<'a>(
        &'a self,
        resource: &'a Value,
        focus: Item<'a>,
        out: &mut Vec<Item<'a>>,
    ) {
        self.root.eval(&Env { resource }, focus, out);
    }
}

#[derive(Debug)]
enum Expr {
    Literal(Literal),
    Path(Path),
    Union(Vec<Expr>),
    Equality {
        left: Box<Expr>,
        right: Box<Expr>,
        negated: bool,
    },
    And(Box<Expr>, Box<Expr>),
}

#[derive(Debug, Clone, PartialEq)]
enum Literal {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// A navigation chain: where it starts, then steps. The steps are cut into segments at the
/// steps that need the whole collection (`exists`, `first`, `[n]`), so that the steps within a
/// segment can stream item by item.
#[derive(Debug)]
struct Path {
    head: Head,
    segments: Vec<Segment>,
}

#[derive(Debug)]
struct Segment {
    steps: Vec<Step>,
    then: Option<CollectionOp>,
}

#[derive(Debug)]
enum Head {
    /// The context item: `$this`, or the implicit start of a relative path.
    Focus,
    /// `%resource`.
    Resource,
    /// A leading type name (`Patient.name`): the focus if it is of that type.
    TypeFilter(TypeTest),
    /// A parenthesised expression.
    Group(Box<Expr>),
}

#[derive(Debug)]
enum Step {
    Child(Child),
    Where(Box<Expr>),
    /// `as`, `ofType`: keep items of the type.
    Filter(TypeTest),
    /// `is`: whether each item is of the type.
    Is(TypeTest),
    Extension(String),
    HasExtension(String),
    Resolve,
}

#[derive(Debug, Clone, Copy)]
enum CollectionOp {
    Exists,
    First,
    Index(usize),
}

#[derive(Debug)]
struct Child {
    name: String,
    kind: ChildKind,
}

#[derive(Debug)]
enum ChildKind {
    /// An element with a fixed JSON key. `dynamic` means it holds resources (`contained`,
    /// `Bundle.entry.resource`) whose type is their `resourceType`.
    Plain { ty: Option<String>, dynamic: bool },
    /// A choice element: the JSON keys it may appear under, with the type each stands for.
    Choice(Vec<ChoiceKey>),
}

#[derive(Debug)]
struct ChoiceKey {
    key: String,
    ty: Option<String>,
}

/// A compiled type test: the named type and all types deriving from it.
#[derive(Debug)]
struct TypeTest {
    name: String,
    accepted: Vec<String>,
    /// `Resource`/`Element`: everything of that kind passes, without scanning 146 names.
    any: bool,
}

impl TypeTest {
    fn accepts_type(&self, ty: &str) -> bool {
        self.any || self.accepted.iter().any(|t| t == ty)
    }

    fn matches(&self, item: &Item<'_>) -> bool {
        match item {
            Item::Node { ty: Some(ty), .. } => self.accepts_type(ty),
            Item::Node { value, ty: None } => self.shape_matches(value),
            Item::Resolved {
                resource_type: Some(t),
            } => self.accepts_type(t),
            Item::Resolved {
                resource_type: None,
            } => false,
            Item::Bool(_) => self.accepts_type("boolean"),
            Item::Str(_) => self.accepts_type("string"),
            Item::Int(_) => self.accepts_type("integer"),
        }
    }

    /// For untyped nodes: whether the JSON shape fits the type at all.
    fn shape_matches(&self, value: &Value) -> bool {
        let first = self.name.chars().next().unwrap_or('a');
        match value {
            Value::Bool(_) => self.name == "boolean",
            Value::Number(_) => matches!(
                self.name.as_str(),
                "decimal" | "integer" | "positiveInt" | "unsignedInt"
            ),
            Value::String(_) => first.is_ascii_lowercase(),
            Value::Object(_) => first.is_ascii_uppercase(),
            _ => false,
        }
    }
}

// =============================================================================================
// Evaluation

struct Env<'a> {
    resource: &'a Value,
}

impl Expr {
    fn eval<'a>(&'a self, env: &Env<'a>, focus: Item<'a>, out: &mut Vec<Item<'a>>) {
        match self {
            Expr::Literal(l) => out.push(l.item()),
            Expr::Path(p) => p.eval(env, focus, out),
            Expr::Union(branches) => branches.iter().for_each(|b| b.eval(env, focus, out)),
            Expr::Equality { .. } | Expr::And(..) => {
                if let Some(b) = self.eval_bool(env, focus) {
                    out.push(Item::Bool(b));
                }
            }
        }
    }

    /// The expression as a boolean with FHIRPath's three-valued logic (`None`: empty).
    fn eval_bool<'a>(&'a self, env: &Env<'a>, focus: Item<'a>) -> Option<bool> {
        match self {
            Expr::Literal(Literal::Bool(b)) => Some(*b),
            Expr::And(a, b) => match (a.eval_bool(env, focus), b.eval_bool(env, focus)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            },
            Expr::Equality {
                left,
                right,
                negated,
            } => {
                let mut l = Vec::new();
                let mut r = Vec::new();
                left.eval(env, focus, &mut l);
                right.eval(env, focus, &mut r);
                if l.is_empty() || r.is_empty() {
                    return None;
                }
                let equal = l.len() == r.len() && l.iter().zip(&r).all(|(a, b)| items_equal(a, b));
                Some(equal != *negated)
            }
            _ => {
                let mut items = Vec::new();
                self.eval(env, focus, &mut items);
                singleton_bool(&items)
            }
        }
    }
}

impl Literal {
    fn item(&self) -> Item<'_> {
        match self {
            Literal::Str(s) => Item::Str(s),
            Literal::Int(i) => Item::Int(*i),
            Literal::Bool(b) => Item::Bool(*b),
        }
    }
}

/// FHIRPath's singleton evaluation of a collection as a boolean.
fn singleton_bool(items: &[Item<'_>]) -> Option<bool> {
    match items {
        [] => None,
        [Item::Bool(b)]
        | [
            Item::Node {
                value: Value::Bool(b),
                ..
            },
        ] => Some(*b),
        [_] => Some(true),
        _ => None,
    }
}

#[derive(PartialEq)]
enum Scalar<'a> {
    Str(&'a str),
    Bool(bool),
    Num(f64),
}

fn scalar<'a>(item: &Item<'a>) -> Option<Scalar<'a>> {
    match item {
        Item::Str(s) => Some(Scalar::Str(s)),
        Item::Bool(b) => Some(Scalar::Bool(*b)),
        Item::Int(i) => Some(Scalar::Num(*i as f64)),
        Item::Node {
            value: Value::String(s),
            ..
        } => Some(Scalar::Str(s)),
        Item::Node {
            value: Value::Bool(b),
            ..
        } => Some(Scalar::Bool(*b)),
        Item::Node {
            value: Value::Number(n),
            ..
        } => n.as_f64().map(Scalar::Num),
        _ => None,
    }
}

fn items_equal(a: &Item<'_>, b: &Item<'_>) -> bool {
    match (scalar(a), scalar(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

impl Path {
    fn eval<'a>(&'a self, env: &Env<'a>, focus: Item<'a>, out: &mut Vec<Item<'a>>) {
        if let [Segment { steps, then: None }] = self.segments.as_slice() {
            // The common case: stream from the head straight into `out`.
            self.head_items(env, focus, |item| walk(steps, env, item, out));
            return;
        }
        let mut current = Vec::new();
        self.head_items(env, focus, |item| current.push(item));
        for segment in &self.segments {
            let mut next = Vec::with_capacity(current.len());
            for item in current {
                walk(&segment.steps, env, item, &mut next);
            }
            match segment.then {
                None => {}
                Some(CollectionOp::Exists) => next = vec![Item::Bool(!next.is_empty())],
                Some(CollectionOp::First) => next.truncate(1),
                Some(CollectionOp::Index(i)) => {
                    next = next.get(i).map(|item| vec![*item]).unwrap_or_default()
                }
            }
            current = next;
        }
        out.extend(current);
    }

    fn head_items<'a>(&'a self, env: &Env<'a>, focus: Item<'a>, mut each: impl FnMut(Item<'a>)) {
        match &self.head {
            Head::Focus => each(focus),
            Head::Resource => each(Item::resource(env.resource)),
            Head::TypeFilter(test) => {
                if test.matches(&focus) {
                    each(focus)
                }
            }
            Head::Group(expr) => {
                let mut items = Vec::new();
                expr.eval(env, focus, &mut items);
                items.into_iter().for_each(each);
            }
        }
    }
}

/// Applies `steps` to one item, depth-first, pushing the final items to `out`.
fn walk<'a>(steps: &'a [Step], env: &Env<'a>, item: Item<'a>, out: &mut Vec<Item<'a>>) {
    let Some((step, rest)) = steps.split_first() else {
        out.push(item);
        return;
    };
    match step {
        Step::Child(child) => {
            if let Item::Node {
                value: Value::Object(object),
                ..
            } = item
            {
                child.for_each(object, |next| walk(rest, env, next, out));
            }
        }
        Step::Where(criteria) => {
            if criteria.eval_bool(env, item) == Some(true) {
                walk(rest, env, item, out);
            }
        }
        Step::Filter(test) => {
            if test.matches(&item) {
                walk(rest, env, item, out);
            }
        }
        Step::Is(test) => walk(rest, env, Item::Bool(test.matches(&item)), out),
        Step::Extension(url) => {
            for extension in extensions(item, url) {
                walk(
                    rest,
                    env,
                    Item::Node {
                        value: extension,
                        ty: Some("Extension"),
                    },
                    out,
                );
            }
        }
        Step::HasExtension(url) => {
            let has = extensions(item, url).next().is_some();
            walk(rest, env, Item::Bool(has), out);
        }
        Step::Resolve => {
            if let Some(resolved) = resolve(env, item) {
                walk(rest, env, resolved, out);
            }
        }
    }
}

impl Child {
    /// Calls `each` for every node of this element in `object`, arrays flattened.
    fn for_each<'a>(
        &'a self,
        object: &'a serde_json::Map<String, Value>,
        mut each: impl FnMut(Item<'a>),
    ) {
        match &self.kind {
            ChildKind::Plain { ty, dynamic } => {
                if let Some(value) = get_field(object, &self.name) {
                    let ty = ty.as_deref();
                    flatten(value, |v| {
                        let ty = if *dynamic {
                            get(v, "resourceType").and_then(Value::as_str)
                        } else {
                            ty
                        };
                        each(Item::Node { value: v, ty })
                    });
                }
            }
            ChildKind::Choice(keys) => {
                // Scan the object's keys rather than probing every possible key: an object has
                // a dozen keys, a choice element up to fifty types.
                for (key, value) in object {
                    if !key.starts_with(self.name.as_str()) {
                        continue;
                    }
                    if let Some(choice) = keys.iter().find(|c| c.key == *key) {
                        flatten(value, |v| {
                            each(Item::Node {
                                value: v,
                                ty: choice.ty.as_deref(),
                            })
                        });
                    }
                }
            }
        }
    }
}

/// An array's elements one by one (skipping the `null`s that align primitive arrays with their
/// `_element` extensions), or the value itself.
fn flatten<'a>(value: &'a Value, mut each: impl FnMut(&'a Value)) {
    match value {
        Value::Array(items) => items.iter().filter(|v| !v.is_null()).for_each(each),
        Value::Null => {}
        v => each(v),
    }
}

fn extensions<'a>(item: Item<'a>, url: &'a str) -> impl Iterator<Item = &'a Value> + 'a {
    item.value()
        .and_then(|v| get(v, "extension"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |e| get(e, "url").and_then(Value::as_str) == Some(url))
}

/// `resolve()` without fetching: the referenced resource's type, from the reference string
/// (relative, absolute, conditional, or `#id` of a contained resource) or `Reference.type`.
fn resolve<'a>(env: &Env<'a>, item: Item<'a>) -> Option<Item<'a>> {
    let value = item.value()?;
    let (reference, declared_type) = match value {
        Value::String(s) => (Some(s.as_str()), None), // canonical / uri
        Value::Object(o) => (
            get_field(o, "reference").and_then(Value::as_str),
            get_field(o, "type").and_then(Value::as_str),
        ),
        _ => return None,
    };
    let from_reference = reference.and_then(|r| match r.strip_prefix('#') {
        Some(id) => contained_type(env.resource, id),
        None => parse_reference(r).map(|p| p.resource_type),
    });
    let resource_type = from_reference.or(declared_type);
    if reference.is_none() && resource_type.is_none() {
        return None; // identifier-only or display-only reference: nothing to resolve
    }
    Some(Item::Resolved { resource_type })
}

fn contained_type<'a>(resource: &'a Value, id: &str) -> Option<&'a str> {
    resource
        .get("contained")?
        .as_array()?
        .iter()
        .find(|c| c.get("id").and_then(Value::as_str) == Some(id))?
        .get("resourceType")?
        .as_str()
}

// =============================================================================================
// Compilation: syntax tree + type model -> Expr

/// The static type of a collection: a type name, or unknown.
type StaticType = Option<String>;

struct Compiler<'m> {
    model: &'m TypeModel,
    resource_type: Option<String>,
    warnings: Vec<String>,
}

/// A path under construction, with the static type of what it yields so far.
struct PathBuilder {
    head: Head,
    segments: Vec<Segment>,
    ty: StaticType,
}

impl PathBuilder {
    fn new(head: Head, ty: StaticType) -> Self {
        PathBuilder {
            head,
            segments: vec![Segment {
                steps: Vec::new(),
                then: None,
            }],
            ty,
        }
    }

    fn push(&mut self, step: Step) {
        let last = self
            .segments
            .last_mut()
            .expect("a path has at least one segment");
        if last.then.is_some() {
            self.segments.push(Segment {
                steps: vec![step],
                then: None,
            });
        } else {
            last.steps.push(step);
        }
    }

    fn push_collection_op(&mut self, op: CollectionOp) {
        let last = self
            .segments
            .last_mut()
            .expect("a path has at least one segment");
        if last.then.is_some() {
            self.segments.push(Segment {
                steps: Vec::new(),
                then: Some(op),
            });
        } else {
            last.then = Some(op);
        }
    }

    fn last_step_mut(&mut self) -> Option<&mut Step> {
        let last = self.segments.last_mut()?;
        if last.then.is_some() {
            None
        } else {
            last.steps.last_mut()
        }
    }

    fn finish(self) -> (Expr, StaticType) {
        (
            Expr::Path(Path {
                head: self.head,
                segments: self.segments,
            }),
            self.ty,
        )
    }
}

impl Compiler<'_> {
    fn compile(
        &mut self,
        syntax: &Syntax,
        focus: &StaticType,
    ) -> Result<(Expr, StaticType), CompileError> {
        match syntax {
            Syntax::Literal(l) => {
                let ty = match l {
                    Literal::Str(_) => "string",
                    Literal::Int(_) => "integer",
                    Literal::Bool(_) => "boolean",
                };
                Ok((Expr::Literal(l.clone()), Some(ty.to_owned())))
            }
            Syntax::Binary {
                op: BinaryOp::Union,
                left,
                right,
            } => {
                let (l, lt) = self.compile(left, focus)?;
                let (r, rt) = self.compile(right, focus)?;
                let mut branches = match l {
                    Expr::Union(b) => b,
                    other => vec![other],
                };
                branches.push(r);
                let ty = if lt == rt { lt } else { None };
                Ok((Expr::Union(branches), ty))
            }
            Syntax::Binary { op, left, right } => {
                let (l, _) = self.compile(left, focus)?;
                let (r, _) = self.compile(right, focus)?;
                let expr = match op {
                    BinaryOp::And => Expr::And(Box::new(l), Box::new(r)),
                    BinaryOp::Equal | BinaryOp::NotEqual => Expr::Equality {
                        left: Box::new(l),
                        right: Box::new(r),
                        negated: *op == BinaryOp::NotEqual,
                    },
                    BinaryOp::Union => unreachable!("handled above"),
                };
                Ok((expr, Some("boolean".to_owned())))
            }
            _ => Ok(self.path(syntax, focus)?.finish()),
        }
    }

    /// Compiles a postfix chain (member access, calls, indexers, `is`/`as`) into a path.
    fn path(&mut self, syntax: &Syntax, focus: &StaticType) -> Result<PathBuilder, CompileError> {
        match syntax {
            Syntax::This => Ok(PathBuilder::new(Head::Focus, focus.clone())),
            Syntax::EnvVar(name, pos) => match name.as_str() {
                "resource" | "rootResource" => {
                    Ok(PathBuilder::new(Head::Resource, self.resource_type.clone()))
                }
                _ => Err(error(
                    format!("unsupported environment variable %{name}"),
                    *pos,
                )),
            },
            Syntax::Member { input: None, name } if self.is_type_head(name, focus) => {
                let test = self.type_test(name);
                let ty = Some(test.name.clone());
                Ok(PathBuilder::new(Head::TypeFilter(test), ty))
            }
            Syntax::Member { input, name } => {
                let mut path = self.input_path(input.as_deref(), focus)?;
                self.push_child(&mut path, name);
                Ok(path)
            }
            Syntax::Call {
                input,
                name,
                args,
                pos,
            } => {
                let mut path = self.input_path(input.as_deref(), focus)?;
                self.push_call(&mut path, name, args, *pos)?;
                Ok(path)
            }
            Syntax::Index { input, index, pos } => {
                let mut path = self.path(input, focus)?;
                let i = match index.as_ref() {
                    Syntax::Literal(Literal::Int(i)) if *i >= 0 => *i as usize,
                    _ => {
                        return Err(error(
                            "only non-negative integer indexes are supported",
                            *pos,
                        ));
                    }
                };
                path.push_collection_op(CollectionOp::Index(i));
                Ok(path)
            }
            Syntax::TypeOp {
                input,
                is,
                type_name,
            } => {
                let mut path = self.path(input, focus)?;
                if *is {
                    let test = self.type_test(type_name);
                    path.push(Step::Is(test));
                    path.ty = Some("boolean".to_owned());
                } else {
                    self.push_cast(&mut path, type_name);
                }
                Ok(path)
            }
            // A literal or an operator expression used as the start of a chain, e.g. `(a | b).c`.
            Syntax::Literal(..) | Syntax::Binary { .. } => {
                let (expr, ty) = self.compile(syntax, focus)?;
                Ok(PathBuilder::new(Head::Group(Box::new(expr)), ty))
            }
        }
    }

    fn input_path(
        &mut self,
        input: Option<&Syntax>,
        focus: &StaticType,
    ) -> Result<PathBuilder, CompileError> {
        match input {
            Some(syntax) => self.path(syntax, focus),
            None => Ok(PathBuilder::new(Head::Focus, focus.clone())),
        }
    }

    /// A leading capitalised identifier naming a type (`Patient.name`, `Resource.meta`) filters
    /// the focus by type; anything else is an element of the focus (`code`, `value.as(...)`).
    fn is_type_head(&self, name: &str, focus: &StaticType) -> bool {
        if !name.starts_with(|c: char| c.is_ascii_uppercase()) {
            return false;
        }
        // A capitalised element name would be unusual; prefer it when the focus has one.
        let is_element = focus
            .as_deref()
            .is_some_and(|f| self.model.element(f, name).is_some());
        !is_element
    }

    fn push_child(&mut self, path: &mut PathBuilder, name: &str) {
        let kind = match path.ty.as_deref() {
            Some(ty) => match self.model.element(ty, name) {
                Some(ElementDef::Single(t)) => ChildKind::Plain {
                    ty: Some(t.clone()),
                    dynamic: self.model.is_subtype(t, "Resource") && !t.contains('.'),
                },
                Some(ElementDef::Choice(types)) => ChildKind::Choice(
                    types
                        .iter()
                        .map(|t| ChoiceKey {
                            key: format!("{name}{}", upper_first(t)),
                            ty: Some(t.clone()),
                        })
                        .collect(),
                ),
                None => {
                    if self.model.contains(ty) {
                        self.warnings
                            .push(format!("`{ty}` has no element `{name}`"));
                    }
                    ChildKind::Plain {
                        ty: None,
                        dynamic: false,
                    }
                }
            },
            None => ChildKind::Plain {
                ty: None,
                dynamic: false,
            },
        };
        path.ty = match &kind {
            ChildKind::Plain { ty, dynamic: false } => ty.clone(),
            ChildKind::Plain { dynamic: true, .. } => Some("Resource".to_owned()),
            ChildKind::Choice(_) => None,
        };
        path.push(Step::Child(Child {
            name: name.to_owned(),
            kind,
        }));
    }

    /// `as T` / `.as(T)` / `.ofType(T)`. Directly after a child step the cast folds into the
    /// child: a choice element keeps only the keys of matching types (`value.as(Quantity)` reads
    /// just `valueQuantity`), and an untyped child also tries the choice keys of `T`, so
    /// `value.as(Quantity)` works even where the focus type is unknown.
    fn push_cast(&mut self, path: &mut PathBuilder, type_name: &str) {
        let test = self.type_test(type_name);
        let folded = match path.last_step_mut() {
            Some(Step::Child(child)) => match &mut child.kind {
                ChildKind::Choice(keys) => {
                    keys.retain(|k| k.ty.as_deref().is_some_and(|t| test.accepts_type(t)));
                    true
                }
                ChildKind::Plain { ty: None, .. } => {
                    let mut keys = vec![ChoiceKey {
                        key: child.name.clone(),
                        ty: None,
                    }];
                    keys.extend(test.accepted.iter().map(|t| ChoiceKey {
                        key: format!("{}{}", child.name, upper_first(t)),
                        ty: Some(t.clone()),
                    }));
                    child.kind = ChildKind::Choice(keys);
                    // The plain key's nodes are untyped: the filter still has to look at them.
                    false
                }
                ChildKind::Plain { .. } => false,
            },
            _ => false,
        };
        path.ty = Some(test.name.clone());
        if !folded {
            path.push(Step::Filter(test));
        }
    }

    fn push_call(
        &mut self,
        path: &mut PathBuilder,
        name: &str,
        args: &[Syntax],
        pos: usize,
    ) -> Result<(), CompileError> {
        let arity = |n: usize| {
            if args.len() == n {
                Ok(())
            } else {
                Err(error(
                    format!("{name}() takes {n} argument(s), got {}", args.len()),
                    pos,
                ))
            }
        };
        match name {
            "where" => {
                arity(1)?;
                let (criteria, _) = self.compile(&args[0], &path.ty)?;
                path.push(Step::Where(Box::new(criteria)));
            }
            "exists" => {
                // exists(criteria) is where(criteria).exists()
                if let [criteria] = args {
                    let (criteria, _) = self.compile(criteria, &path.ty)?;
                    path.push(Step::Where(Box::new(criteria)));
                } else {
                    arity(0)?;
                }
                path.push_collection_op(CollectionOp::Exists);
                path.ty = Some("boolean".to_owned());
            }
            "first" => {
                arity(0)?;
                path.push_collection_op(CollectionOp::First);
            }
            "resolve" => {
                arity(0)?;
                path.push(Step::Resolve);
                path.ty = None;
            }
            "as" | "ofType" | "is" => {
                arity(1)?;
                let type_name = type_argument(&args[0])
                    .ok_or_else(|| error(format!("{name}() needs a type name"), pos))?;
                if name == "is" {
                    let test = self.type_test(&type_name);
                    path.push(Step::Is(test));
                    path.ty = Some("boolean".to_owned());
                } else {
                    self.push_cast(path, &type_name);
                }
            }
            "extension" | "hasExtension" => {
                arity(1)?;
                let Syntax::Literal(Literal::Str(url)) = &args[0] else {
                    return Err(error(format!("{name}() needs a string literal URL"), pos));
                };
                if name == "extension" {
                    path.push(Step::Extension(url.clone()));
                    path.ty = Some("Extension".to_owned());
                } else {
                    path.push(Step::HasExtension(url.clone()));
                    path.ty = Some("boolean".to_owned());
                }
            }
            _ => return Err(error(format!("unsupported function {name}()"), pos)),
        }
        Ok(())
    }

    fn type_test(&mut self, spec: &str) -> TypeTest {
        let name = match self.model.resolve_type_name(spec) {
            Some(n) => n,
            None => {
                if !self.model.types.is_empty() {
                    self.warnings.push(format!("unknown type `{spec}`"));
                }
                spec.to_owned()
            }
        };
        let any = name == "Resource" || name == "Element";
        let accepted = if any {
            Vec::new()
        } else {
            self.model.subtypes(&name)
        };
        TypeTest {
            name,
            accepted,
            any,
        }
    }
}

/// A type specifier given as a function argument: `as(Quantity)`, `ofType(FHIR.Reference)`.
fn type_argument(syntax: &Syntax) -> Option<String> {
    match syntax {
        Syntax::Member { input: None, name } => Some(name.clone()),
        Syntax::Member {
            input: Some(ns),
            name,
        } => match ns.as_ref() {
            Syntax::Member {
                input: None,
                name: namespace,
            } => Some(format!("{namespace}.{name}")),
            _ => None,
        },
        _ => None,
    }
}

fn error(message: impl Into<String>, position: usize) -> CompileError {
    CompileError {
        message: message.into(),
        position,
    }
}

// =============================================================================================
// Syntax

#[derive(Debug)]
enum Syntax {
    Literal(Literal),
    This,
    EnvVar(String, usize),
    Member {
        input: Option<Box<Syntax>>,
        name: String,
    },
    Call {
        input: Option<Box<Syntax>>,
        name: String,
        args: Vec<Syntax>,
        pos: usize,
    },
    Index {
        input: Box<Syntax>,
        index: Box<Syntax>,
        pos: usize,
    },
    TypeOp {
        input: Box<Syntax>,
        is: bool,
        type_name: String,
    },
    Binary {
        op: BinaryOp,
        left: Box<Syntax>,
        right: Box<Syntax>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinaryOp {
    Union,
    Equal,
    NotEqual,
    And,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Ident(String),
    /// A backtick-delimited identifier: never a keyword.
    QuotedIdent(String),
    Str(String),
    Int(i64),
    EnvVar(String),
    This,
    Dot,
    Comma,
    LParen,
    RParen,
    LBracket,
    RBracket,
    Pipe,
    Equal,
    NotEqual,
    End,
}

fn tokenize(source: &str) -> Result<Vec<(Token, usize)>, CompileError> {
    let bytes = source.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let start = i;
        let b = bytes[i];
        let token = match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'.' => single(&mut i, Token::Dot),
            b',' => single(&mut i, Token::Comma),
            b'(' => single(&mut i, Token::LParen),
            b')' => single(&mut i, Token::RParen),
            b'[' => single(&mut i, Token::LBracket),
            b']' => single(&mut i, Token::RBracket),
            b'|' => single(&mut i, Token::Pipe),
            b'=' => single(&mut i, Token::Equal),
            b'!' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                Token::NotEqual
            }
            b'\'' => {
                let (s, end) = string_literal(source, i)?;
                i = end;
                Token::Str(s)
            }
            b'`' => {
                let end = source[i + 1..]
                    .find('`')
                    .ok_or_else(|| error("unterminated `identifier`", start))?
                    + i
                    + 1;
                let name = source[i + 1..end].to_owned();
                i = end + 1;
                Token::QuotedIdent(name)
            }
            b'%' | b'$' => {
                i += 1;
                let name = identifier(bytes, &mut i);
                match (b, name) {
                    (b'%', Some(n)) => Token::EnvVar(n),
                    (b'$', Some(n)) if n == "this" => Token::This,
                    _ => return Err(error("unsupported variable", start)),
                }
            }
            b'0'..=b'9' => {
                while i < bytes.len() && bytes[i].is_ascii_digit() {
                    i += 1;
                }
                if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
                    return Err(error("decimal literals are not supported", start));
                }
                Token::Int(
                    source[start..i]
                        .parse()
                        .map_err(|_| error("integer literal too large", start))?,
                )
            }
            _ if b.is_ascii_alphabetic() || b == b'_' => {
                Token::Ident(identifier(bytes, &mut i).unwrap_or_default())
            }
            _ => {
                let c = source[i..].chars().next().unwrap_or('?');
                return Err(error(
                    format!("unsupported character or operator `{c}`"),
                    start,
                ));
            }
        };
        tokens.push((token, start));
    }
    tokens.push((Token::End, source.len()));
    Ok(tokens)
}

fn single(i: &mut usize, token: Token) -> Token {
    *i += 1;
    token
}

fn identifier(bytes: &[u8], i: &mut usize) -> Option<String> {
    let start = *i;
    while *i < bytes.len() && (bytes[*i].is_ascii_alphanumeric() || bytes[*i] == b'_') {
        *i += 1;
    }
    (*i > start).then(|| String::from_utf8_lossy(&bytes[start..*i]).into_owned())
}

/// A `'...'` literal starting at byte `start`; returns the unescaped text and the end offset.
fn string_literal(source: &str, start: usize) -> Result<(String, usize), CompileError> {
    let mut out = String::new();
    let mut chars = source[start + 1..].char_indices();
    while let Some((offset, c)) = chars.next() {
        match c {
            '\'' => return Ok((out, start + 1 + offset + 1)),
            '\\' => {
                let (_, escaped) = chars
                    .next()
                    .ok_or_else(|| error("unterminated string", start))?;
                out.push(match escaped {
                    '\'' | '"' | '`' | '\\' | '/' => escaped,
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'f' => '\u{c}',
                    'u' => {
                        let hex: String = (0..4)
                            .filter_map(|_| chars.next().map(|(_, h)| h))
                            .collect();
                        u32::from_str_radix(&hex, 16)
                            .ok()
                            .and_then(char::from_u32)
                            .ok_or_else(|| error("bad \\u escape", start))?
                    }
                    _ => return Err(error(format!("unknown escape \\{escaped}"), start)),
                });
            }
            _ => out.push(c),
        }
    }
    Err(error("unterminated string", start))
}

/// Recursive descent over FHIRPath's precedence levels that the subset uses, loosest first:
/// `and`, then `=`/`!=`, then `|`, then `is`/`as`, then postfix (`.`, `[]`, calls).
struct Parser {
    tokens: Vec<(Token, usize)>,
    pos: usize,
}

impl Parser {
    fn new(source: &str) -> Result<Self, CompileError> {
        Ok(Parser {
            tokens: tokenize(source)?,
            pos: 0,
        })
    }

    fn peek(&self) -> &Token {
        &self.tokens[self.pos].0
    }

    fn offset(&self) -> usize {
        self.tokens[self.pos].1
    }

    fn next(&mut self) -> Token {
        let token = self.tokens[self.pos].0.clone();
        if token != Token::End {
            self.pos += 1;
        }
        token
    }

    fn expect(&mut self, token: Token) -> Result<(), CompileError> {
        if *self.peek() == token {
            self.next();
            Ok(())
        } else {
            Err(error(
                format!("expected {token:?}, found {:?}", self.peek()),
                self.offset(),
            ))
        }
    }

    fn at_keyword(&self, keyword: &str) -> bool {
        matches!(self.peek(), Token::Ident(s) if s == keyword)
    }

    fn parse_all(mut self) -> Result<Syntax, CompileError> {
        if *self.peek() == Token::End {
            return Err(error("empty expression", 0));
        }
        let expr = self.parse_and()?;
        if *self.peek() != Token::End {
            let what = match self.peek() {
                Token::Ident(k)
                    if ["or", "xor", "implies", "in", "contains", "div", "mod"]
                        .contains(&k.as_str()) =>
                {
                    format!("unsupported operator `{k}`")
                }
                t => format!("unexpected {t:?}"),
            };
            return Err(error(what, self.offset()));
        }
        Ok(expr)
    }

    fn parse_and(&mut self) -> Result<Syntax, CompileError> {
        let mut left = self.parse_equality()?;
        while self.at_keyword("and") {
            self.next();
            let right = self.parse_equality()?;
            left = Syntax::Binary {
                op: BinaryOp::And,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    fn parse_equality(&mut self) -> Result<Syntax, CompileError> {
        let mut left = self.parse_union()?;
        loop {
            let op = match self.peek() {
                Token::Equal => BinaryOp::Equal,
                Token::NotEqual => BinaryOp::NotEqual,
                _ => return Ok(left),
            };
            self.next();
            let right = self.parse_union()?;
            left = Syntax::Binary {
                op,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
    }

    fn parse_union(&mut self) -> Result<Syntax, CompileError> {
        let mut left = self.parse_type_op()?;
        while *self.peek() == Token::Pipe {
            self.next();
            let right = self.parse_type_op()?;
            left = Syntax::Binary {
                op: BinaryOp::Union,
                left: Box::new(left),
                right: Box::new(right),
            };
        }
        Ok(left)
    }

    fn parse_type_op(&mut self) -> Result<Syntax, CompileError> {
        let mut left = self.parse_postfix()?;
        while self.at_keyword("is") || self.at_keyword("as") {
            let is = self.at_keyword("is");
            self.next();
            let type_name = self.parse_type_specifier()?;
            left = Syntax::TypeOp {
                input: Box::new(left),
                is,
                type_name,
            };
        }
        Ok(left)
    }

    /// `Name` or `Namespace.Name`.
    fn parse_type_specifier(&mut self) -> Result<String, CompileError> {
        let mut name = self.identifier()?;
        if *self.peek() == Token::Dot {
            self.next();
            name = format!("{name}.{}", self.identifier()?);
        }
        Ok(name)
    }

    fn identifier(&mut self) -> Result<String, CompileError> {
        match self.next() {
            Token::Ident(s) | Token::QuotedIdent(s) => Ok(s),
            t => Err(error(
                format!("expected an identifier, found {t:?}"),
                self.tokens[self.pos.saturating_sub(1)].1,
            )),
        }
    }

    fn parse_postfix(&mut self) -> Result<Syntax, CompileError> {
        let mut expr = self.parse_term()?;
        loop {
            match self.peek() {
                Token::Dot => {
                    self.next();
                    let pos = self.offset();
                    let name = self.identifier()?;
                    expr = self.member_or_call(Some(expr), name, pos)?;
                }
                Token::LBracket => {
                    let pos = self.offset();
                    self.next();
                    let index = self.parse_and()?;
                    self.expect(Token::RBracket)?;
                    expr = Syntax::Index {
                        input: Box::new(expr),
                        index: Box::new(index),
                        pos,
                    };
                }
                _ => return Ok(expr),
            }
        }
    }

    fn member_or_call(
        &mut self,
        input: Option<Syntax>,
        name: String,
        pos: usize,
    ) -> Result<Syntax, CompileError> {
        let input = input.map(Box::new);
        if *self.peek() != Token::LParen {
            return Ok(Syntax::Member { input, name });
        }
        self.next();
        let mut args = Vec::new();
        if *self.peek() != Token::RParen {
            loop {
                args.push(self.parse_and()?);
                if *self.peek() != Token::Comma {
                    break;
                }
                self.next();
            }
        }
        self.expect(Token::RParen)?;
        Ok(Syntax::Call {
            input,
            name,
            args,
            pos,
        })
    }

    fn parse_term(&mut self) -> Result<Syntax, CompileError> {
        let pos = self.offset();
        match self.next() {
            Token::Str(s) => Ok(Syntax::Literal(Literal::Str(s))),
            Token::Int(i) => Ok(Syntax::Literal(Literal::Int(i))),
            Token::Ident(s) if s == "true" || s == "false" => {
                Ok(Syntax::Literal(Literal::Bool(s == "true")))
            }
            Token::Ident(s) | Token::QuotedIdent(s) => self.member_or_call(None, s, pos),
            Token::EnvVar(name) => Ok(Syntax::EnvVar(name, pos)),
            Token::This => Ok(Syntax::This),
            Token::LParen => {
                let inner = self.parse_and()?;
                self.expect(Token::RParen)?;
                Ok(inner)
            }
            t => Err(error(format!("unexpected {t:?}"), pos)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// A hand-written model fragment, so these tests do not depend on the generated data.
    fn model() -> TypeModel {
        TypeModel::from_json(&json!({
            "Resource": {"elements": {"id": "string", "meta": "Meta"}},
            "DomainResource": {"base": "Resource", "elements": {"extension": "Extension", "contained": "Resource"}},
            "Element": {"elements": {"extension": "Extension", "id": "string"}},
            "BackboneElement": {"base": "Element"},
            "Meta": {"base": "Element", "elements": {"tag": "Coding"}},
            "Extension": {"base": "Element", "elements": {"url": "uri", "value": ["string", "Coding", "Quantity"]}},
            "Patient": {"base": "DomainResource", "elements": {
                "name": "HumanName", "telecom": "ContactPoint", "deceased": ["boolean", "dateTime"],
                "link": "Patient.link", "generalPractitioner": "Reference"}},
            "Patient.link": {"base": "BackboneElement", "elements": {"other": "Reference"}},
            "Practitioner": {"base": "DomainResource"}, "RelatedPerson": {"base": "DomainResource"},
            "Observation": {"base": "DomainResource", "elements": {
                "code": "CodeableConcept", "subject": "Reference",
                "value": ["Quantity", "CodeableConcept", "string", "dateTime", "Period"],
                "component": "Observation.component"}},
            "Observation.component": {"base": "BackboneElement", "elements": {
                "code": "CodeableConcept", "value": ["Quantity", "CodeableConcept"]}},
            "Bundle": {"base": "Resource", "elements": {"entry": "Bundle.entry"}},
            "Bundle.entry": {"base": "BackboneElement", "elements": {"resource": "Resource"}},
            "HumanName": {"base": "Element", "elements": {"family": "string", "given": "string"}},
            "ContactPoint": {"base": "Element", "elements": {"system": "code", "value": "string"}},
            "Reference": {"base": "Element", "elements": {"reference": "string", "type": "uri"}},
            "CodeableConcept": {"base": "Element", "elements": {"coding": "Coding", "text": "string"}},
            "Coding": {"base": "Element", "elements": {"system": "uri", "code": "code"}},
            "Quantity": {"base": "Element", "elements": {"value": "decimal"}},
            "Age": {"base": "Quantity"},
            "Period": {"base": "Element", "elements": {"start": "dateTime"}},
            "string": {"base": "Element"}, "code": {"base": "string"}, "uri": {"base": "Element"},
            "boolean": {"base": "Element"}, "dateTime": {"base": "Element"}, "decimal": {"base": "Element"},
        }))
        .unwrap()
    }

    fn eval(source: &str, on: &str, resource: &Value) -> Vec<Value> {
        let m = model();
        let e = Expression::compile(source, &m, on).unwrap_or_else(|err| panic!("{source}: {err}"));
        assert!(e.warnings().is_empty(), "{source}: {:?}", e.warnings());
        e.evaluate(resource)
            .into_iter()
            .map(|item| match item {
                Item::Node { value, .. } => value.clone(),
                Item::Bool(b) => json!(b),
                Item::Str(s) => json!(s),
                Item::Int(i) => json!(i),
                Item::Resolved { resource_type } => json!({ "resolved": resource_type }),
            })
            .collect()
    }

    fn types(source: &str, on: &str, resource: &Value) -> Vec<Option<String>> {
        let m = model();
        let e = Expression::compile(source, &m, on).unwrap();
        e.evaluate(resource)
            .iter()
            .map(|i| i.type_name().map(str::to_owned))
            .collect()
    }

    fn patient() -> Value {
        json!({
            "resourceType": "Patient", "id": "p1",
            "meta": {"tag": [{"system": "s", "code": "c"}]},
            "name": [{"family": "Sharma", "given": ["Asha", "K"]}, {"family": "Verma"}],
            "telecom": [{"system": "phone", "value": "98"}, {"system": "email", "value": "a@b"}],
            "deceasedDateTime": "2020-01-01",
            "extension": [{"url": "http://x/ext", "valueString": "hello"}, {"url": "http://y", "valueCoding": {"code": "z"}}],
            "generalPractitioner": [{"reference": "Practitioner/9"}, {"reference": "Organization/3"}, {"reference": "#c1"}],
            "contained": [{"resourceType": "Practitioner", "id": "c1"}],
            "link": [{"other": {"reference": "http://other/fhir/RelatedPerson/5/_history/2"}}]
        })
    }

    #[test]
    fn navigation_flattens_arrays() {
        let p = patient();
        assert_eq!(
            eval("Patient.name.family", "Patient", &p),
            vec![json!("Sharma"), json!("Verma")]
        );
        assert_eq!(
            eval("Patient.name.given", "Patient", &p),
            vec![json!("Asha"), json!("K")]
        );
        assert_eq!(eval("Patient.link.other.reference", "Patient", &p).len(), 1);
        assert_eq!(
            types("Patient.name", "Patient", &p),
            vec![Some("HumanName".into()); 2]
        );
        assert_eq!(
            types("Patient.link", "Patient", &p),
            vec![Some("Patient.link".into())]
        );
    }

    #[test]
    fn type_head_filters_the_resource_type() {
        let p = patient();
        assert!(eval("Observation.code", "Observation", &p).is_empty());
        assert_eq!(
            eval("Resource.meta.tag.code", "Resource", &p),
            vec![json!("c")]
        );
        assert_eq!(eval("Resource.id", "Patient", &p), vec![json!("p1")]);
    }

    #[test]
    fn choice_elements_carry_their_type() {
        let p = patient();
        assert_eq!(
            eval("Patient.deceased", "Patient", &p),
            vec![json!("2020-01-01")]
        );
        assert_eq!(
            types("Patient.deceased", "Patient", &p),
            vec![Some("dateTime".into())]
        );
        let obs =
            json!({"resourceType": "Observation", "valueQuantity": {"value": 5}, "valueless": 1});
        assert_eq!(
            types("Observation.value", "Observation", &obs),
            vec![Some("Quantity".into())]
        );
        assert_eq!(
            eval("(Observation.value as Quantity).value", "Observation", &obs),
            vec![json!(5)]
        );
        assert_eq!(
            eval("Observation.value.as(Quantity)", "Observation", &obs).len(),
            1
        );
        assert!(eval("Observation.value.as(CodeableConcept)", "Observation", &obs).is_empty());
        assert!(eval("Observation.value as string", "Observation", &obs).is_empty());
        assert_eq!(
            eval("Observation.value.is(Quantity)", "Observation", &obs),
            vec![json!(true)]
        );
        assert_eq!(
            eval("Observation.value is Period", "Observation", &obs),
            vec![json!(false)]
        );
    }

    #[test]
    fn a_plain_element_is_not_mistaken_for_a_choice() {
        // `code` is not a choice element: `codeQuantity` must not be read as it.
        let obs = json!({"resourceType": "Observation", "codeQuantity": {"value": 1}});
        assert!(eval("Observation.code", "Observation", &obs).is_empty());
    }

    #[test]
    fn subtypes_pass_casts() {
        let m = TypeModel::from_json(&json!({
            "Element": {}, "Quantity": {"base": "Element"}, "Age": {"base": "Quantity"},
            "Condition": {"elements": {"onset": ["dateTime", "Age", "string"]}}, "dateTime": {}, "string": {}
        }))
        .unwrap();
        let c = json!({"resourceType": "Condition", "onsetAge": {"value": 40}});
        let e = Expression::compile("Condition.onset.as(Quantity)", &m, "Condition").unwrap();
        assert_eq!(e.evaluate(&c).len(), 1);
        let e = Expression::compile("Condition.onset.as(DateTime)", &m, "Condition").unwrap();
        assert!(
            e.warnings().is_empty(),
            "DateTime is the system name of dateTime"
        );
        assert!(e.evaluate(&c).is_empty());
    }

    #[test]
    fn where_with_equality() {
        let p = patient();
        assert_eq!(
            eval("Patient.telecom.where(system='email').value", "Patient", &p),
            vec![json!("a@b")]
        );
        assert!(eval("Patient.telecom.where(system='fax')", "Patient", &p).is_empty());
        assert_eq!(
            eval("Patient.name.where(given = 'K')", "Patient", &p).len(),
            0,
            "two givens != one literal"
        );
        assert_eq!(
            eval(
                "Patient.name.where(family = 'Verma' and family != 'X').family",
                "Patient",
                &p
            ),
            vec![json!("Verma")]
        );
    }

    #[test]
    fn resolve_is_type_uses_the_reference() {
        let p = patient();
        assert_eq!(
            eval(
                "Patient.generalPractitioner.where(resolve() is Practitioner).reference",
                "Patient",
                &p
            ),
            vec![json!("Practitioner/9"), json!("#c1")],
            "relative and contained references"
        );
        assert_eq!(
            eval(
                "Patient.link.other.where(resolve() is RelatedPerson)",
                "Patient",
                &p
            )
            .len(),
            1
        );
        let typed = json!({"resourceType": "Observation", "subject": {"reference": "urn:uuid:1", "type": "Patient"}});
        assert_eq!(
            eval(
                "Observation.subject.where(resolve() is Patient)",
                "Observation",
                &typed
            )
            .len(),
            1
        );
        let untyped =
            json!({"resourceType": "Observation", "subject": {"reference": "urn:uuid:1"}});
        assert!(
            eval(
                "Observation.subject.where(resolve() is Patient)",
                "Observation",
                &untyped
            )
            .is_empty()
        );
    }

    #[test]
    fn extensions() {
        let p = patient();
        let found = eval("Patient.extension('http://x/ext')", "Patient", &p);
        assert_eq!(
            found,
            vec![json!({"url": "http://x/ext", "valueString": "hello"})]
        );
        assert_eq!(
            extension_value(&found[0]),
            Some(Item::Node {
                value: &json!("hello"),
                ty: Some("string")
            })
        );
        assert_eq!(
            eval(
                "Patient.extension.where(url = 'http://y').value.as(Coding).code",
                "Patient",
                &p
            ),
            vec![json!("z")]
        );
        assert_eq!(
            eval("Patient.where(hasExtension('http://y')).id", "Patient", &p),
            vec![json!("p1")]
        );
        assert!(
            eval(
                "Patient.where(hasExtension('http://none')).id",
                "Patient",
                &p
            )
            .is_empty()
        );
    }

    #[test]
    fn exists_and_booleans() {
        let source = "Patient.deceased.exists() and Patient.deceased != false";
        assert_eq!(eval(source, "Patient", &patient()), vec![json!(true)]);
        let alive = json!({"resourceType": "Patient", "deceasedBoolean": false});
        assert_eq!(eval(source, "Patient", &alive), vec![json!(false)]);
        let unknown = json!({"resourceType": "Patient"});
        assert_eq!(
            eval(source, "Patient", &unknown),
            vec![json!(false)],
            "false and empty is false"
        );
    }

    #[test]
    fn indexer_first_union_and_resource() {
        let bundle = json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Composition", "id": "c"}},
            {"resource": {"resourceType": "Patient", "id": "p"}}]});
        assert_eq!(
            eval("Bundle.entry[0].resource.id", "Bundle", &bundle),
            vec![json!("c")]
        );
        assert_eq!(
            types("Bundle.entry[1].resource", "Bundle", &bundle),
            vec![Some("Patient".into())]
        );
        assert!(eval("Bundle.entry[2].resource", "Bundle", &bundle).is_empty());
        assert_eq!(
            eval("Bundle.entry.resource.first().id", "Bundle", &bundle),
            vec![json!("c")]
        );
        let p = patient();
        assert_eq!(
            eval("Patient.name[1].family | Patient.id", "Patient", &p),
            vec![json!("Verma"), json!("p1")]
        );
        let obs = json!({"resourceType": "Observation", "code": {"text": "t"},
            "component": [{"code": {"text": "c1"}, "valueQuantity": {"value": 1}}]});
        let m = model();
        let comp = Expression::compile_relative(
            "%resource.code.text | code.text",
            &m,
            Some("Observation"),
            Some("Observation.component"),
        )
        .unwrap();
        let component = Item::Node {
            value: &obs["component"][0],
            ty: Some("Observation.component"),
        };
        let mut out = Vec::new();
        comp.evaluate_on(&obs, component, &mut out);
        assert_eq!(
            out.iter()
                .map(|i| i.value().unwrap().clone())
                .collect::<Vec<_>>(),
            vec![json!("t"), json!("c1")]
        );
    }

    #[test]
    fn untyped_cast_reads_choice_keys() {
        // Observation | Observation.component has no single static type: the cast still finds
        // the choice key.
        let m = model();
        let e = Expression::compile_relative("value.as(Quantity)", &m, Some("Observation"), None)
            .unwrap();
        let obs = json!({"valueQuantity": {"value": 2}});
        let mut out = Vec::new();
        e.evaluate_on(
            &obs,
            Item::Node {
                value: &obs,
                ty: None,
            },
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].type_name(), Some("Quantity"));
    }

    #[test]
    fn warnings_for_unknown_elements() {
        let m = model();
        let e = Expression::compile("Patient.nmae", &m, "Patient").unwrap();
        assert_eq!(e.warnings(), ["`Patient` has no element `nmae`"]);
    }

    #[test]
    fn unsupported_constructs_are_refused() {
        for (source, needle) in [
            ("Patient.name.count()", "unsupported function count()"),
            ("Patient.a or Patient.b", "unsupported operator `or`"),
            ("Patient.a > 5", "unsupported character or operator `>`"),
            ("Patient.a + 1", "`+`"),
            ("%context.a", "%context"),
            ("Patient.name[", "expected"),
            ("'abc", "unterminated"),
            ("", "empty"),
            ("Patient.extension(url)", "string literal URL"),
            ("Patient.where()", "takes 1 argument"),
            ("Patient.value.as('x')", "needs a type name"),
        ] {
            let err = Expression::parse(source).expect_err(source);
            assert!(err.message.contains(needle), "{source}: {err}");
        }
    }

    #[test]
    fn string_literal_escapes() {
        let e = Expression::parse(r"'it\'s \u0041\\'").unwrap();
        let v = json!({});
        assert_eq!(e.evaluate(&v), vec![Item::Str("it's A\\")]);
    }

    #[test]
    fn reference_parsing() {
        let p = |s| parse_reference(s);
        assert_eq!(
            p("Patient/123"),
            Some(ReferenceParts {
                resource_type: "Patient",
                id: Some("123"),
                version: None,
                absolute: false
            })
        );
        assert_eq!(
            p("https://h/fhir/Patient/1/_history/3"),
            Some(ReferenceParts {
                resource_type: "Patient",
                id: Some("1"),
                version: Some("3"),
                absolute: true
            })
        );
        assert_eq!(
            p("Patient?identifier=x|1").map(|r| (r.resource_type, r.id)),
            Some(("Patient", None))
        );
        for bad in [
            "urn:uuid:1234",
            "#c1",
            "Patient",
            "patient/1",
            "a/Patient/1",
            "Patient/",
            "Patient/a b",
            "Patient/1/_history/",
        ] {
            assert_eq!(p(bad), None, "{bad}");
        }
    }
}
