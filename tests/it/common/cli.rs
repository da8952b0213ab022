//! The operator CLI without a switch: [`CliEnv`] runs the built `tambun` binary against its own
//! temp dir and database, for the `cli` and `cli_calls` tests.
//!
//! The dialplan is the shipped `dialplan/` directory (setda 1000-1199, dinkes 2300-2499,
//! diskominfo 3500-3599, …). When it is missing (a checkout without it), a minimal stand-in
//! with those three OPDs is written into the temp dir, and a note is printed.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use tambun::sip::auth::{ha1_hex, Algorithm};
use tambun::store::Store;

use super::{clear_tambun_env, shipped_dialplan, TAMBUN};

/// One temp dir with a database path (`x.db`, created by the first command) and a dialplan.
pub struct CliEnv {
    dir: tempfile::TempDir,
    pub db: PathBuf,
    pub dialplan: PathBuf,
}

impl CliEnv {
    pub fn new() -> CliEnv {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("x.db");
        let shipped = shipped_dialplan();
        let dialplan = if has_toml_files(&shipped) {
            shipped
        } else {
            eprintln!(
                "note: {} is missing; using a minimal stand-in dialplan",
                shipped.display()
            );
            let dp = dir.path().join("dialplan");
            std::fs::create_dir(&dp).unwrap();
            for (code, name, block) in [
                ("setda", "Sekretariat Daerah", "1000-1199"),
                ("dinkes", "Dinas Kesehatan", "2300-2499"),
                (
                    "diskominfo",
                    "Dinas Komunikasi dan Informatika",
                    "3500-3599",
                ),
            ] {
                std::fs::write(
                    dp.join(format!("{code}.toml")),
                    format!(
                        "[opd]\ncode = \"{code}\"\nname = \"{name}\"\nblocks = [\"{block}\"]\n"
                    ),
                )
                .unwrap();
            }
            dp
        };
        CliEnv { dir, db, dialplan }
    }

    /// A file in the temp dir.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs `tambun` with `--db` and `--dialplan` after the other arguments, in the temp dir,
    /// with none of the caller's `TAMBUN_*` variables or `RUST_LOG`.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(TAMBUN);
        clear_tambun_env(&mut cmd);
        cmd.args(args)
            .arg("--db")
            .arg(&self.db)
            .arg("--dialplan")
            .arg(&self.dialplan)
            .current_dir(self.dir.path())
            .env_remove("RUST_LOG");
        cmd.output().unwrap()
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "tambun {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and expects exit code 1; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(1),
            "tambun {args:?} should fail; stdout: {} stderr: {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    /// Runs, expects success and parses stdout as JSON.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    /// The stored MD5 HA1 of extension `number`, and the realm, read from the database.
    pub fn ha1_md5(&self, number: &str) -> (String, String) {
        let store = Store::open(&self.db).unwrap();
        let rec = store.extension(&number.parse().unwrap()).unwrap().unwrap();
        (rec.ha1_md5, store.realm().unwrap())
    }

    /// Asserts that the database holds `password` for extension `number`.
    pub fn assert_password(&self, number: &str, password: &str) {
        let (ha1, realm) = self.ha1_md5(number);
        assert_eq!(ha1, ha1_hex(Algorithm::Md5, number, &realm, password));
    }
}

fn has_toml_files(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .filter_map(Result::ok)
            .any(|e| e.path().extension().is_some_and(|x| x == "toml"))
    })
}
