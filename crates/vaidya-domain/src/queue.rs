//! The OPD queue: a patient's place in a department's queue for the day, from token to done.
//!
//! A token is issued at check-in (`Waiting`); the doctor calls the next patient (`Called`),
//! sees them (`InConsultation`) and finishes (`Done`). A called patient who does not come can
//! go back to waiting once (`Called -> Waiting`) or be marked absent (`NoShow`).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueState {
    Waiting,
    Called,
    InConsultation,
    Done,
    NoShow,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("a patient who is {from} cannot become {to}")]
    NotAllowed { from: QueueState, to: QueueState },
    #[error("unknown queue state {0:?} (waiting, called, in-consultation, done, no-show)")]
    Unknown(String),
    #[error("token numbers run from 1 to 9999 a day")]
    TokenOutOfRange,
}

impl QueueState {
    pub const ALL: [QueueState; 5] =
        [QueueState::Waiting, QueueState::Called, QueueState::InConsultation, QueueState::Done, QueueState::NoShow];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueState::Waiting => "waiting",
            QueueState::Called => "called",
            QueueState::InConsultation => "in-consultation",
            QueueState::Done => "done",
            QueueState::NoShow => "no-show",
        }
    }

    /// Whether the patient has left the queue for good.
    pub fn is_final(self) -> bool {
        matches!(self, QueueState::Done | QueueState::NoShow)
    }

    /// Move to `to`, if that is a step the queue allows.
    pub fn advance(self, to: QueueState) -> Result<QueueState, QueueError> {
        use QueueState::*;
        let allowed = matches!(
            (self, to),
            (Waiting, Called) | (Called, InConsultation) | (Called, Waiting) | (Waiting | Called, NoShow) | (InConsultation, Done)
        );
        if allowed { Ok(to) } else { Err(QueueError::NotAllowed { from: self, to }) }
    }
}

impl fmt::Display for QueueState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for QueueState {
    type Err = QueueError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        QueueState::ALL.into_iter().find(|q| q.as_str() == s).ok_or_else(|| QueueError::Unknown(s.to_string()))
    }
}

/// A department's queue token for one day, shown as `GM-017`: the department's short code and
/// the token number (1-9999), which the desk calls out and the patient holds on a slip.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueToken {
    department: String,
    number: u16,
}

impl QueueToken {
    pub fn new(department: &str, number: u64) -> Result<QueueToken, QueueError> {
        let number = u16::try_from(number).ok().filter(|n| (1..=9999).contains(n)).ok_or(QueueError::TokenOutOfRange)?;
        let code: String = department.chars().filter(|c| c.is_ascii_alphanumeric()).take(6).collect::<String>().to_uppercase();
        Ok(QueueToken { department: code, number })
    }

    pub fn number(&self) -> u16 {
        self.number
    }
}

impl fmt::Display for QueueToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{:03}", self.department, self.number)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_normal_path_and_its_detours() {
        use QueueState::*;
        let path = [Called, InConsultation, Done];
        let mut s = Waiting;
        for next in path {
            s = s.advance(next).unwrap();
        }
        assert_eq!(s, Done);
        assert_eq!(Called.advance(Waiting), Ok(Waiting));
        assert_eq!(Waiting.advance(NoShow), Ok(NoShow));
        for (from, to) in [(Waiting, Done), (Waiting, InConsultation), (Done, Waiting), (NoShow, Called), (InConsultation, Waiting)] {
            assert_eq!(from.advance(to), Err(QueueError::NotAllowed { from, to }));
        }
        assert_eq!("in-consultation".parse::<QueueState>(), Ok(InConsultation));
        assert!("called-out".parse::<QueueState>().is_err());
    }

    #[test]
    fn tokens() {
        assert_eq!(QueueToken::new("gen-med", 17).unwrap().to_string(), "GENMED-017");
        assert_eq!(QueueToken::new("ent", 1234).unwrap().to_string(), "ENT-1234");
        assert!(QueueToken::new("ent", 0).is_err());
        assert!(QueueToken::new("ent", 10_000).is_err());
    }

    proptest! {
        /// Whatever is attempted, a final state is never left.
        #[test]
        fn final_states_are_final(steps in proptest::collection::vec(0usize..5, 0..20)) {
            let mut s = QueueState::Waiting;
            let mut finished = false;
            for i in steps {
                if let Ok(next) = s.advance(QueueState::ALL[i]) {
                    prop_assert!(!finished, "left a final state");
                    s = next;
                }
                finished |= s.is_final();
            }
        }
    }
}
