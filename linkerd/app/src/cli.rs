//! The proxy's command line (DESIGN.md section 4).

use std::{ffi::OsString, fmt, net::SocketAddr, path::PathBuf};

/// Parsed command-line flags.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// `--config FILE`.
    pub config: Option<PathBuf>,
    /// `--listen ADDR`: overrides the config's `listen`.
    pub listen: Option<SocketAddr>,
    /// `--admin ADDR`: overrides the config's `admin`.
    pub admin: Option<SocketAddr>,
    /// `--access-log FORMAT`: overrides `accessLog.format`.
    pub access_log: Option<String>,
    /// `--check`: validate, print a summary, exit.
    pub check: bool,
    /// `--help`.
    pub help: bool,
}

/// A command line that cannot be understood.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageError(pub String);

/// The usage text.
pub const USAGE: &str = "\
usage: proxy [--config FILE | FILE] [--listen ADDR] [--admin ADDR] [--access-log FORMAT] [--check]

  --config FILE        YAML config (default: an embedded config with a demo backend)
  --listen ADDR        proxy address, overrides `listen` (default 127.0.0.1:4140)
  --admin ADDR         admin address, overrides `admin` (default 127.0.0.1:4191)
  --access-log FORMAT  json | apache | a %field% template, overrides `accessLog.format`
  --check              validate the config, print a summary and exit (0 ok, 2 errors)
";

impl Args {
    /// Parses flags (without the program name). Both `--flag VALUE` and `--flag=VALUE`.
    ///
    /// # Errors
    /// Unknown flags, missing values and unparsable addresses.
    pub fn parse<I, S>(args: I) -> Result<Self, UsageError>
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        let mut out = Self::default();
        let mut it = args.into_iter().map(Into::into);
        while let Some(arg) = it.next() {
            let arg = arg
                .into_string()
                .map_err(|a| UsageError(format!("argument is not UTF-8: {a:?}")))?;
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            let mut value = |name: &str| -> Result<String, UsageError> {
                if let Some(v) = inline.clone() {
                    return Ok(v);
                }
                it.next()
                    .and_then(|v| v.into_string().ok())
                    .ok_or_else(|| UsageError(format!("{name} needs a value")))
            };
            match flag.as_str() {
                "--config" => out.config = Some(PathBuf::from(value("--config")?)),
                "--listen" => out.listen = Some(addr("--listen", &value("--listen")?)?),
                "--admin" => out.admin = Some(addr("--admin", &value("--admin")?)?),
                "--access-log" => out.access_log = Some(value("--access-log")?),
                "--check" => out.check = true,
                "-h" | "--help" => out.help = true,
                // A bare argument names the config file (`proxy --check examples/proxy.yaml`).
                other if !other.starts_with('-') && out.config.is_none() => {
                    out.config = Some(PathBuf::from(other));
                }
                other => return Err(UsageError(format!("unknown argument {other:?}"))),
            }
        }
        Ok(out)
    }
}

fn addr(flag: &str, s: &str) -> Result<SocketAddr, UsageError> {
    s.parse()
        .map_err(|_| UsageError(format!("{flag}: invalid address {s:?}: expected IP:PORT")))
}

impl fmt::Display for UsageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags() {
        let a = Args::parse([
            "--config",
            "x.yaml",
            "--listen=127.0.0.1:0",
            "--admin",
            "127.0.0.1:9",
            "--access-log",
            "apache",
            "--check",
        ])
        .unwrap();
        assert_eq!(a.config, Some(PathBuf::from("x.yaml")));
        assert_eq!(a.listen, Some("127.0.0.1:0".parse().unwrap()));
        assert_eq!(a.admin, Some("127.0.0.1:9".parse().unwrap()));
        assert_eq!(a.access_log.as_deref(), Some("apache"));
        assert!(a.check);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(Args::parse(["--nope"]).is_err());
        assert!(Args::parse(["--listen"]).is_err());
        assert!(Args::parse(["--listen", "localhost"]).is_err());
        assert!(Args::parse(["--config", "a.yaml", "b.yaml"]).is_err());
    }

    #[test]
    fn bare_argument_is_the_config_file() {
        let a = Args::parse(["--check", "examples/proxy.yaml"]).unwrap();
        assert_eq!(a.config, Some(PathBuf::from("examples/proxy.yaml")));
        assert!(a.check);
    }
}
