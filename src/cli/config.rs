//! Config files for `grapevine run`: `<data-dir>/config.ini` in witness_node's syntax (read at
//! every start, written with the defaults on the first), and `--config FILE` in that syntax or
//! TOML.
//!
//! Every key is the long name (or a hidden old name) of a `grapevine run` option, and each
//! value is checked by the same parser as on the command line: one `key = value` is parsed as
//! `--key=value`, and a bare `key =` in INI as `--key` (the option's implicit value, e.g. true).
//! In INI, keys grapevine does not have (witness_node's `plugins`, `checkpoint`, `rpc-tls-endpoint`
//! ...) are ignored and reported in one warning, and `[sections]` (witness_node's logging) are
//! skipped with one note; in TOML an unknown key stays an error, as before. witness_node's
//! `rpc-endpoint` is read as grapevine's status API endpoint: the option of that name here.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, FromArgMatches};

use super::CliError;
use super::ini;
use super::run::{self, RunArgs};

/// The config file in the data directory.
pub const CONFIG_INI: &str = "config.ini";
/// Width the written config.ini's comments are wrapped at.
const COMMENT_WIDTH: usize = 96;

/// A config file, checked.
#[derive(Debug)]
pub struct Loaded {
    pub path: PathBuf,
    /// The settings it makes (fields it does not set are empty).
    pub args: RunArgs,
    /// Keys that are not grapevine options here, with their lines.
    pub ignored: Vec<(String, usize)>,
    /// Sections skipped, with their header lines.
    pub sections: Vec<(String, usize)>,
}

impl Loaded {
    /// One line naming every ignored key, if any.
    pub fn ignored_note(&self) -> Option<String> {
        if self.ignored.is_empty() {
            return None;
        }
        let mut lines: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        let mut order = Vec::new();
        for (key, line) in &self.ignored {
            let entry = lines.entry(key.as_str()).or_default();
            if entry.is_empty() {
                order.push(key.as_str());
            }
            entry.push(*line);
        }
        let cmd = run_command();
        let names: Vec<String> = order
            .iter()
            .map(|key| {
                let at = lines[key]
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                let s = if lines[key].len() > 1 { "s" } else { "" };
                if option_for(&cmd, key).is_some() {
                    return format!(
                        "{key} (line{s} {at}; only on the command line or in --config)"
                    );
                }
                match suggestion(&cmd, key) {
                    Some(near) => format!("{key} (line{s} {at}; did you mean {near}?)"),
                    None => format!("{key} (line{s} {at})"),
                }
            })
            .collect();
        Some(format!(
            "{}: ignoring settings grapevine does not take from this file: {}",
            self.path.display(),
            names.join(", ")
        ))
    }

    /// One line naming every skipped section, if any.
    pub fn sections_note(&self) -> Option<String> {
        if self.sections.is_empty() {
            return None;
        }
        let names: Vec<String> = self
            .sections
            .iter()
            .map(|(name, line)| format!("[{name}] (line {line})"))
            .collect();
        Some(format!(
            "{}: skipped sections {} (witness_node's logging settings are not read; see \
             --log-level)",
            self.path.display(),
            names.join(", ")
        ))
    }
}

/// One `key = value` of a file. `value` is `None` for a bare INI `key =`.
struct Setting {
    line: usize,
    key: String,
    value: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Origin {
    /// `--config FILE` in TOML.
    Toml,
    /// `--config FILE` in INI.
    Ini,
    /// `<data-dir>/config.ini` (which cannot move the data directory).
    DataDirIni,
}

/// `grapevine run`'s options as a clap command of their own.
fn run_command() -> clap::Command {
    RunArgs::augment_args(clap::Command::new("run")).no_binary_name(true)
}

/// The long name of the option `key` names (its own name or an alias).
fn option_for(cmd: &clap::Command, key: &str) -> Option<String> {
    cmd.get_arguments()
        .find(|a| {
            a.get_long() == Some(key) || a.get_all_aliases().is_some_and(|al| al.contains(&key))
        })
        .and_then(|a| a.get_long())
        .map(str::to_string)
}

/// A visible option name close to a misspelt key.
fn suggestion(cmd: &clap::Command, key: &str) -> Option<String> {
    if key.len() < 5 {
        return None;
    }
    cmd.get_arguments()
        .filter(|a| !a.is_hide_set())
        .filter_map(|a| a.get_long())
        .map(|name| (edit_distance(key, name), name))
        .filter(|(d, _)| *d <= 2)
        .min()
        .map(|(_, name)| name.to_string())
}

/// Levenshtein distance (for short option names).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (prev + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(row[j + 1] + 1);
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// clap's first error line, without its `error: ` prefix.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.lines().next().unwrap_or("invalid value");
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// Checks settings with the command line's parsers and gathers them.
fn apply(path: &Path, settings: Vec<Setting>, origin: Origin) -> Result<Loaded, CliError> {
    let cmd = run_command();
    let mut loaded = Loaded {
        path: path.to_path_buf(),
        args: RunArgs::default(),
        ignored: Vec::new(),
        sections: Vec::new(),
    };
    for s in settings {
        let fail = |message: String| {
            CliError(format!(
                "config file {} line {}: {}: {message}",
                path.display(),
                s.line,
                s.key
            ))
        };
        let usable = match option_for(&cmd, &s.key).as_deref() {
            None | Some("config") => false,
            Some("data-dir") => origin != Origin::DataDirIni,
            Some(_) => true,
        };
        if !usable {
            if origin == Origin::Toml {
                return Err(fail("unknown key".into()));
            }
            loaded.ignored.push((s.key, s.line));
            continue;
        }
        let token = match &s.value {
            Some(v) => format!("--{}={v}", s.key),
            None => format!("--{}", s.key),
        };
        let matches = cmd
            .clone()
            .try_get_matches_from([token])
            .map_err(|e| fail(clap_message(&e)))?;
        let part = RunArgs::from_arg_matches(&matches).map_err(|e| fail(clap_message(&e)))?;
        loaded
            .args
            .absorb(part)
            .map_err(|()| fail("given more than once, and it takes one value".into()))?;
    }
    Ok(loaded)
}

/// Reads an INI file's options.
fn from_ini(path: &Path, text: &str, origin: Origin) -> Result<Loaded, CliError> {
    let parsed =
        ini::parse(text).map_err(|e| CliError(format!("config file {} {e}", path.display())))?;
    let settings = parsed
        .entries
        .into_iter()
        .map(|e| Setting {
            line: e.line,
            key: e.key,
            value: (!e.value.is_empty()).then_some(e.value),
        })
        .collect();
    let mut loaded = apply(path, settings, origin)?;
    loaded.sections = parsed
        .sections
        .into_iter()
        .map(|s| (s.name, s.line))
        .collect();
    Ok(loaded)
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset).map_or(0, |t| t.matches('\n').count()) + 1
}

/// Reads a TOML file's options: strings, integers and booleans as written; an array as the
/// key repeated (`seed-nodes`, a JSON array on the command line, takes it as one JSON value).
fn from_toml(path: &Path, text: &str) -> Result<Loaded, CliError> {
    let table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e
            .span()
            .map(|s| format!(" (line {})", line_of(text, s.start)))
            .unwrap_or_default();
        CliError(format!(
            "config file {} is not valid TOML{at}: {}",
            path.display(),
            e.message()
        ))
    })?;
    let mut key_lines = BTreeMap::new();
    if let Ok(spanned) = toml::de::DeTable::parse(text) {
        for key in spanned.get_ref().keys() {
            key_lines.insert(key.get_ref().to_string(), line_of(text, key.span().start));
        }
    }
    let mut settings = Vec::new();
    for (key, value) in &table {
        let line = key_lines.get(key).copied().unwrap_or(0);
        let bad = |what: &str| {
            CliError(format!(
                "config file {} line {line}: {key}: expected {what}",
                path.display()
            ))
        };
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            _ => None,
        };
        let mut push = |value: String| {
            settings.push(Setting {
                line,
                key: key.clone(),
                value: Some(value),
            })
        };
        match value {
            toml::Value::Array(items) if key == "seed-nodes" => {
                let strings = items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
                    .ok_or_else(|| bad("a list of strings"))?;
                push(serde_json::to_string(&strings).map_err(|e| bad(&e.to_string()))?);
            }
            toml::Value::Array(items) => {
                for item in items {
                    push(scalar(item).ok_or_else(|| bad("a list of strings or numbers"))?);
                }
            }
            other => push(scalar(other).ok_or_else(|| bad("a string, number or boolean"))?),
        }
    }
    apply(path, settings, Origin::Toml)
}

/// Reads `--config FILE`: INI for `.ini`, TOML for `.toml`; otherwise TOML when it parses as
/// TOML (as every `--config` file was before INI was read), else INI.
pub fn read_config_file(path: &Path) -> Result<Loaded, CliError> {
    let text = fs::read_to_string(path)
        .map_err(|e| CliError(format!("cannot read config file {}: {e}", path.display())))?;
    let extension = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match extension.as_deref() {
        Some("ini") => from_ini(path, &text, Origin::Ini),
        Some("toml") => from_toml(path, &text),
        _ => match from_toml(path, &text) {
            Ok(loaded) => Ok(loaded),
            Err(toml_error) if text.parse::<toml::Table>().is_err() => {
                from_ini(path, &text, Origin::Ini).map_err(|ini_error| {
                    CliError(format!(
                        "{} (and as INI: {})",
                        toml_error.0,
                        ini_error
                            .0
                            .replace(&format!("config file {} ", path.display()), "")
                    ))
                })
            }
            Err(e) => Err(e),
        },
    }
}

/// Reads `<data-dir>/config.ini` if it exists.
pub fn read_data_dir_config(data_dir: &Path) -> Result<Option<Loaded>, CliError> {
    let path = data_dir.join(CONFIG_INI);
    let text = match fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(CliError(format!(
                "cannot read config file {}: {e}",
                path.display()
            )));
        }
    };
    from_ini(&path, &text, Origin::DataDirIni).map(Some)
}

/// `text` as `# ` comment lines of at most [`COMMENT_WIDTH`] characters.
fn comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() > 1 && line.len() + 1 + word.len() > COMMENT_WIDTH {
            out.push_str(&line);
            out.push('\n');
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    out.push_str(&line);
    out.push('\n');
}

/// The config.ini written on first start: every option with its description, commented out
/// at its default (or blank when it has none), in witness_node's layout.
pub fn default_config_ini() -> String {
    let mut out = String::new();
    comment(
        &mut out,
        "grapevine's settings, in witness_node's config.ini syntax: key = value, a repeated key \
         adds to a list option, # starts a comment. Each key is the `grapevine run` option of \
         the same name; --config FILE and the command line override this file.",
    );
    out.push_str("#\n");
    comment(
        &mut out,
        "Written on first start with every option commented out at its default. witness_node \
         options grapevine does not have (plugins, checkpoint, ...) are ignored with a warning; \
         [sections] (witness_node's logging) are skipped. rpc-endpoint is grapevine's status \
         API (HTTP and JSON), not witness_node's websocket API.",
    );
    out.push('\n');
    let cmd = run_command();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else {
            continue;
        };
        if arg.is_hide_set() || matches!(long, "config" | "data-dir" | "help") {
            continue;
        }
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let help = help.split(" [default: ").next().unwrap_or_default();
        comment(&mut out, help);
        let default = run::default_value(long).unwrap_or_default();
        out.push_str(&format!("# {long} = {default}\n\n"));
    }
    out
}

/// Writes [`default_config_ini`] as `<data-dir>/config.ini` unless a file is there already.
/// Answers the path when it wrote one.
pub fn write_default_config_ini(data_dir: &Path) -> std::io::Result<Option<PathBuf>> {
    let path = data_dir.join(CONFIG_INI);
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(default_config_ini().as_bytes())?;
            f.sync_all()?;
            Ok(Some(path))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let mut id = [0u8; 8];
        getrandom::fill(&mut id).unwrap();
        let d = std::env::temp_dir().join(format!("grapevine-config-{name}-{}", hex::encode(id)));
        fs::create_dir_all(&d).unwrap();
        d
    }

    /// witness_node's config.ini shape (see the file's header), with the P2P options filled in.
    fn witness_node_config_ini(p2p: &str, seed: &str, rpc: &str) -> String {
        include_str!("../../tests/config/witness_node_config.ini")
            .replace("@P2P_ENDPOINT@", p2p)
            .replace("@INBOUND_PORT@", "4000")
            .replace("@SEED_NODE@", seed)
            .replace("@RPC_ENDPOINT@", rpc)
    }

    #[test]
    fn witness_node_config_ini_gives_the_same_p2p_settings() {
        use crate::node::AdvertiseAlgorithm;
        let dir = temp_dir("witness");
        let text = witness_node_config_ini("127.0.0.1:2776", "seed.example:1776", "127.0.0.1:9090");
        fs::write(dir.join(CONFIG_INI), &text).unwrap();
        let mut args = RunArgs {
            data_dir: Some(dir.clone()),
            ..RunArgs::default()
        };
        let notes = args.load_config_files().unwrap();
        let c = args.to_runtime_config().unwrap();
        assert_eq!(c.p2p_endpoint, "127.0.0.1:2776".parse().unwrap());
        assert_eq!(
            c.node.inbound_endpoint,
            Some("0.0.0.0:4000".parse().unwrap())
        );
        assert!(c.node.accept_incoming_connections);
        assert!(!c.node.connect_to_new_peers);
        assert_eq!(
            c.node.advertise,
            AdvertiseAlgorithm::ExcludeList(vec![
                "10.0.0.1:1776".parse().unwrap(),
                "10.0.0.2:1776".parse().unwrap()
            ])
        );
        assert_eq!(c.seed_nodes, ["seed.example:1776"]);
        assert_eq!(args.rpc_endpoint, Some("127.0.0.1:9090".parse().unwrap()));
        // One warning naming what is ignored, one note for the sections.
        assert_eq!(notes.warnings.len(), 1, "{:?}", notes.warnings);
        let w = &notes.warnings[0];
        for key in [
            "api-limit-get-account-history-operations",
            "plugins",
            "enable-stale-production",
            "required-participation",
            "private-key",
        ] {
            assert!(w.contains(key), "{key} not in {w}");
        }
        assert!(!w.contains("stream"), "{w}");
        assert_eq!(notes.infos.len(), 1, "{:?}", notes.infos);
        assert!(notes.infos[0].contains("[log.console_appender.stderr]"));
        assert!(notes.infos[0].contains("[logger.p2p]"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn precedence_command_line_then_config_flag_then_data_dir() {
        let dir = temp_dir("precedence");
        fs::write(
            dir.join(CONFIG_INI),
            "max-connections = 10\ndesired-connections = 3\nban-seconds = 7\n\
             seed-node = 127.0.0.1:1\ndata-dir = /elsewhere\n",
        )
        .unwrap();
        let flag_file = dir.join("extra.toml");
        fs::write(
            &flag_file,
            "max-connections = 20\ndesired-connections = 4\n",
        )
        .unwrap();
        let mut args = RunArgs {
            data_dir: Some(dir.clone()),
            config: Some(flag_file),
            max_connections: Some(30),
            ..RunArgs::default()
        };
        let notes = args.load_config_files().unwrap();
        assert_eq!(args.max_connections, Some(30));
        assert_eq!(args.desired_connections, Some(4));
        assert_eq!(args.ban_seconds, Some(7));
        assert_eq!(args.seed_node, ["127.0.0.1:1"]);
        // config.ini cannot move the data directory it lives in.
        assert_eq!(args.data_dir, Some(dir.clone()));
        assert!(
            notes.warnings[0].contains("data-dir (line 5; only on the command line"),
            "{notes:?}"
        );
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn misspelt_keys_get_a_suggestion() {
        let dir = temp_dir("typo");
        fs::write(dir.join(CONFIG_INI), "p2p-endpont = 127.0.0.1:1\n").unwrap();
        let loaded = read_data_dir_config(&dir).unwrap().unwrap();
        let note = loaded.ignored_note().unwrap();
        assert!(note.contains("did you mean p2p-endpoint?"), "{note}");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_written_config_ini_lists_every_option_at_its_default() {
        let text = default_config_ini();
        let dir = temp_dir("written");
        assert_eq!(
            write_default_config_ini(&dir).unwrap(),
            Some(dir.join(CONFIG_INI))
        );
        // Never over an existing file.
        assert_eq!(write_default_config_ini(&dir).unwrap(), None);
        assert_eq!(fs::read_to_string(dir.join(CONFIG_INI)).unwrap(), text);
        // As written, it sets nothing.
        let loaded = read_data_dir_config(&dir).unwrap().unwrap();
        assert!(loaded.ignored.is_empty() && loaded.sections.is_empty());
        assert_eq!(
            format!("{:?}", loaded.args),
            format!("{:?}", RunArgs::default())
        );
        for key in [
            "p2p-endpoint",
            "p2p-inbound-endpoint",
            "p2p-accept-incoming-connections",
            "p2p-connect-to-new-peers",
            "p2p-advertise-peer-algorithm",
            "p2p-advertise-peer-endpoint",
            "p2p-exclude-peer-endpoint",
            "seed-node",
            "seed-nodes",
            "rpc-endpoint",
            "chain-id",
            "max-connections",
            "ban-seconds",
        ] {
            assert!(text.contains(&format!("\n# {key} = ")), "{key} missing");
        }
        assert!(text.contains("# p2p-endpoint = 0.0.0.0:1776\n"));
        assert!(!text.contains("p2p-advertise-peer-list"));
        assert!(text.lines().all(|l| l.is_empty() || l.starts_with('#')));
        assert!(
            text.lines().all(|l| l.len() <= COMMENT_WIDTH + 30),
            "{text}"
        );
        // Uncommenting every default gives the built-in settings.
        let uncommented: String = text
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.split_once(" = ")
                    .is_some_and(|(k, v)| !k.contains(' ') && !v.is_empty())
            })
            .map(|l| format!("{l}\n"))
            .collect();
        assert!(uncommented.lines().count() >= 8, "{uncommented}");
        fs::write(dir.join(CONFIG_INI), &uncommented).unwrap();
        let mut args = RunArgs {
            data_dir: Some(dir.clone()),
            ..RunArgs::default()
        };
        let notes = args.load_config_files().unwrap();
        assert!(notes.warnings.is_empty(), "{notes:?}");
        let from_file = args.to_runtime_config().unwrap();
        let builtin = RunArgs {
            data_dir: Some(dir.clone()),
            ..RunArgs::default()
        }
        .to_runtime_config()
        .unwrap();
        assert_eq!(format!("{from_file:?}"), format!("{builtin:?}"));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_option_takes_effect_from_a_file() {
        // Guards `RunArgs::absorb` and `fill_from`: a field they forget would be dropped.
        let cmd = run_command();
        let dir = temp_dir("every");
        for arg in cmd.get_arguments() {
            let Some(long) = arg.get_long() else {
                continue;
            };
            if matches!(long, "config" | "help") {
                continue;
            }
            let value = match long {
                "data-dir" => "/x",
                "p2p-endpoint" | "p2p-inbound-endpoint" | "rpc-endpoint" => "127.0.0.1:9",
                "seed-node"
                | "p2p-advertise-peer-endpoint"
                | "p2p-exclude-peer-endpoint"
                | "p2p-advertise-peer-list" => "127.0.0.1:9",
                "seed-nodes" => "[]",
                "chain-id" => crate::node::config::BITSHARES_MAINNET_CHAIN_ID,
                "p2p-advertise-peer-algorithm" => "nothing",
                "log-level" => "warn",
                "p2p-accept-incoming-connections"
                | "p2p-connect-to-new-peers"
                | "rpc-allow-remote" => "false",
                _ => "5",
            };
            let path = dir.join(format!("{long}.ini"));
            fs::write(&path, format!("{long} = {value}\n")).unwrap();
            let loaded = read_config_file(&path).unwrap();
            let mut args = RunArgs::default();
            args.fill_from(loaded.args);
            assert_ne!(
                format!("{args:?}"),
                format!("{:?}", RunArgs::default()),
                "{long} had no effect"
            );
        }
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("p2p-endpont", "p2p-endpoint"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("same", "same"), 0);
    }
}
