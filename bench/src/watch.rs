//! `cargo lambda watch`, started the way shared/tests/e2e.rs starts it: in the workspace, the venv
//! first on PATH, cargo's own variables stripped, in a process group of its own.

use crate::Ctx;
use crate::procs::{Proc, free_port, wait_until};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

pub struct Watch {
    pub port: u16,
    pub proc: Proc,
}

impl Watch {
    /// `extra`: arguments after `lambda watch --invoke-address 127.0.0.1 --invoke-port <port>`.
    pub fn start(
        ctx: &Ctx,
        extra: &[&str],
        env: &[(&str, String)],
        log: &str,
    ) -> Result<Watch, String> {
        let port = free_port();
        let mut command = cargo_env(Command::new(&ctx.tools.cargo_lambda));
        // cargo-lambda runs $CARGO when it is set; `make CARGO="nice cargo"` sets it to a command
        // line, not a path, and watch would fail to start `cargo metadata`.
        if std::env::var_os("CARGO").is_some_and(|c| !std::path::Path::new(&c).is_file()) {
            command.env_remove("CARGO");
        }
        command
            .args(["lambda", "watch", "--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .args(extra)
            .current_dir(&ctx.root)
            .env("PATH", ctx.tools.path_with_venv())
            .env("CARGO_TARGET_DIR", &ctx.target_dir)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
        let mut proc = Proc::spawn(command, &ctx.scratch.file(log), true)
            .map_err(|e| format!("cannot start {}: {e}", ctx.tools.cargo_lambda.display()))?;
        wait_until(
            &mut proc,
            Duration::from_secs(120),
            "cargo lambda watch",
            || TcpStream::connect(("127.0.0.1", port)).is_ok(),
        )?;
        Ok(Watch { port, proc })
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        // SIGINT first: watch stops its function instances itself.
        self.proc.interrupt(Duration::from_secs(10));
    }
}

/// `cmd` without the variables cargo sets for a process it runs (`CARGO_PKG_NAME`,
/// `CARGO_MANIFEST_DIR`, `OUT_DIR`, …): build scripts such as ring's name some of them in
/// `rerun-if-env-changed`, so a nested cargo that saw them would rebuild half the dependency tree
/// for everyone sharing the target directory.
pub fn cargo_env(mut cmd: Command) -> Command {
    const SET_BY_CARGO: [&str; 8] = [
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "CARGO_BIN_",
        "CARGO_CRATE_NAME",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_TARGET_TMPDIR",
        "CARGO_RUSTC_CURRENT_DIR",
        "OUT_DIR",
    ];
    for (name, _) in std::env::vars_os() {
        if name
            .to_str()
            .is_some_and(|n| SET_BY_CARGO.iter().any(|p| n.starts_with(p)))
        {
            cmd.env_remove(name);
        }
    }
    cmd
}
