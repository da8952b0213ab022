//! Builds the softphone page and the operator console from `web/` (npm packages from its lockfile, bundled by esbuild)
//! into `$OUT_DIR/web`, where `runtime::web` includes it in the binary.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("web");
    std::fs::create_dir_all(&out).expect("create OUT_DIR/web");
    let web = Path::new("web");
    for p in [
        "web/src",
        "web/build.mjs",
        "web/package.json",
        "web/package-lock.json",
    ] {
        println!("cargo:rerun-if-changed={p}");
    }
    {
        // Two cargo runs (or profiles) building at once must not run `npm ci` together.
        let lock = std::fs::File::create(std::env::temp_dir().join("tambun-web-npm-ci.lock"))
            .expect("create the npm ci lock file");
        lock.lock().expect("take the npm ci lock");
        // A node_modules from before a dependency was added (chart.js for the console) is
        // installed again from the lockfile.
        let modules = web.join("node_modules");
        if !modules.join("jssip").exists() || !modules.join("chart.js").exists() {
            run(
                Command::new("npm").args(["ci", "--no-audit", "--no-fund", "--prefix", "web"]),
                "npm ci",
            );
        }
    }
    run(
        Command::new("node").arg("web/build.mjs").arg(&out),
        "node web/build.mjs",
    );
}

fn run(cmd: &mut Command, what: &str) {
    match cmd.status() {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("building the softphone page: `{what}` failed ({s}); see its output above"),
        Err(e) => panic!(
            "building the softphone page needs Node.js and npm (`apt-get install nodejs npm`): \
             `{what}` could not start: {e}"
        ),
    }
}
