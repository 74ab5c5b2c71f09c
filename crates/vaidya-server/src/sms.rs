//! Text messages to patients' mobiles (the portal's one-time sign-in codes).
//!
//! The interface a gateway implements is [`Gateway`]: one message, one Indian mobile number,
//! delivered or an error. Vaidya ships the [`Outbox`] gateway: each message is written as a
//! file in `<data>/sms-outbox/` (name `<UTC ms>-<mobile>.txt`, content the message), which is
//! what development machines and the tests use, and what a hospital's own SMS sender can pick
//! up and delete (for example a script posting each file to its SMS provider's HTTP API). A
//! gateway never logs a message's text: it holds a sign-in code.

use std::io::Write;
use std::path::{Path, PathBuf};
use vaidya_domain::Mobile;

/// Something that delivers a text message to a mobile number.
pub trait Gateway: Send + Sync {
    fn send(&self, to: &Mobile, text: &str) -> Result<(), String>;
}

/// The outbox directory of a data directory.
pub fn outbox_dir(data: &Path) -> PathBuf {
    data.join("sms-outbox")
}

/// Messages as files in a directory (see the module documentation).
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    pub fn new(dir: PathBuf) -> Outbox {
        Outbox { dir }
    }
}

impl Gateway for Outbox {
    fn send(&self, to: &Mobile, text: &str) -> Result<(), String> {
        std::fs::create_dir_all(&self.dir).map_err(|e| format!("cannot create {}: {e}", self.dir.display()))?;
        let name = format!("{}-{}.txt", vaidya_store::now_ms(), to.national());
        let tmp = self.dir.join(format!(".{name}.tmp"));
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            // A reader sees a message whole or not at all.
            std::fs::rename(&tmp, self.dir.join(&name))
        };
        write().map_err(|e| format!("cannot write the message to {}: {e}", self.dir.display()))
    }
}
