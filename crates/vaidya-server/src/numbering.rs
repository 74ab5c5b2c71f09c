//! Who issues numbers in this process: the core (issuer 00), or a department node in downtime
//! (its own code, 01-99, claimed at the core). UHIDs carry the issuer in their first two digits;
//! receipt and specimen numbers made on a node carry `-Nnn-`, and the counters behind them are
//! the node's own (`node-nn:...`), handed back to the core with the node's entries. So no two
//! issuers can ever give out the same number, and none is given out twice.

use std::sync::atomic::{AtomicU8, Ordering};

static ISSUER: AtomicU8 = AtomicU8::new(vaidya_domain::uhid::CENTRAL_ISSUER);

/// Make this process issue numbers as department node `code` (01-99); set once, at its start.
pub fn act_as_node(code: u8) {
    ISSUER.store(code, Ordering::Relaxed);
}

/// The issuer code of this process (0: the core).
pub fn issuer() -> u8 {
    ISSUER.load(Ordering::Relaxed)
}

/// The prefix of a node's own counters.
pub fn node_prefix(issuer: u8) -> String {
    format!("node-{issuer:02}:")
}

/// The counter named `name` as this process keeps it.
pub fn counter(name: &str) -> String {
    match issuer() {
        0 => name.to_string(),
        n => format!("{}{name}", node_prefix(n)),
    }
}

/// A day's `n`th number with a one-letter kind (`R` receipts, `S` specimens): `R2026112800001`
/// at the core, `R20261128-N07-00001` on node 07.
pub fn daily_number(letter: char, date: vaidya_domain::schedule::LocalDate, n: u64) -> String {
    let day = date.to_string().replace('-', "");
    match issuer() {
        0 => format!("{letter}{day}{n:05}"),
        code => format!("{letter}{day}-N{code:02}-{n:05}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_numbers_and_counters_are_apart_from_the_core_ones() {
        // One test flips the process-wide issuer, and puts it back.
        let date: vaidya_domain::schedule::LocalDate = "2026-11-28".parse().unwrap();
        assert_eq!(daily_number('R', date, 7), "R2026112800007");
        assert_eq!(counter("receipt:2026-11-28"), "receipt:2026-11-28");
        act_as_node(7);
        assert_eq!(daily_number('R', date, 7), "R20261128-N07-00007");
        assert_eq!(counter("receipt:2026-11-28"), "node-07:receipt:2026-11-28");
        act_as_node(0);
        assert_eq!(issuer(), 0);
    }
}
