//! A reader for witness_node's `config.ini` syntax, which is boost::program_options' config
//! file format:
//!
//! - `key = value`, both sides trimmed; a value may be empty (`seed-node =`);
//! - `#` starts a comment anywhere on a line (so values cannot contain `#`);
//! - blank lines are skipped;
//! - `[name]` starts a section; the keys after it belong to that section, not to the options
//!   (witness_node keeps its logging settings in `[log.*]` and `[logger.*]` sections);
//! - a repeated key is repeated: whether that adds to a list or is an error is the caller's
//!   business.
//!
//! Anything else on a line is an error naming the line.

/// One `key = value` line outside any section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IniEntry {
    /// 1-based line number.
    pub line: usize,
    pub key: String,
    /// Trimmed; empty for `key =`.
    pub value: String,
}

/// A `[section]` and how many `key = value` lines it holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IniSection {
    /// 1-based line number of the header.
    pub line: usize,
    pub name: String,
    pub keys: usize,
}

/// A parsed file: the option lines in order, and the sections (whose keys are not options).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Ini {
    pub entries: Vec<IniEntry>,
    pub sections: Vec<IniSection>,
}

/// A line that is neither a comment, a section header nor `key = value`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct IniError {
    pub line: usize,
    pub message: String,
}

/// Parses the text of a config file.
pub fn parse(text: &str) -> Result<Ini, IniError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut ini = Ini::default();
    for (index, raw) in text.lines().enumerate() {
        let line = index + 1;
        let content = raw.split_once('#').map_or(raw, |(before, _)| before).trim();
        if content.is_empty() {
            continue;
        }
        if let Some(name) = content
            .strip_prefix('[')
            .and_then(|rest| rest.strip_suffix(']'))
        {
            ini.sections.push(IniSection {
                line,
                name: name.trim().to_string(),
                keys: 0,
            });
            continue;
        }
        let Some((key, value)) = content.split_once('=') else {
            return Err(IniError {
                line,
                message: format!("{content:?} is not `key = value`, a [section] or a # comment"),
            });
        };
        let key = key.trim();
        if key.is_empty() {
            return Err(IniError {
                line,
                message: "no option name before '='".into(),
            });
        }
        match ini.sections.last_mut() {
            Some(section) => section.keys += 1,
            None => ini.entries.push(IniEntry {
                line,
                key: key.to_string(),
                value: value.trim().to_string(),
            }),
        }
    }
    Ok(ini)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(line: usize, key: &str, value: &str) -> IniEntry {
        IniEntry {
            line,
            key: key.into(),
            value: value.into(),
        }
    }

    #[test]
    fn keys_values_comments_and_blank_values() {
        let text = "\
# a comment
   # an indented comment

p2p-endpoint = 0.0.0.0:1776
seed-node=127.0.0.1:1777   # a trailing comment
seed-node =\t127.0.0.1:1778\r
# seed-nodes = 
rpc-endpoint =
plugins = witness account_history
";
        let ini = parse(text).unwrap();
        assert_eq!(
            ini.entries,
            vec![
                entry(4, "p2p-endpoint", "0.0.0.0:1776"),
                entry(5, "seed-node", "127.0.0.1:1777"),
                entry(6, "seed-node", "127.0.0.1:1778"),
                entry(8, "rpc-endpoint", ""),
                entry(9, "plugins", "witness account_history"),
            ]
        );
        assert!(ini.sections.is_empty());
    }

    #[test]
    fn only_the_first_equals_sign_splits() {
        let ini = parse("seed-nodes = [\"a=b:1\"]\n").unwrap();
        assert_eq!(ini.entries, vec![entry(1, "seed-nodes", "[\"a=b:1\"]")]);
    }

    #[test]
    fn keys_in_sections_are_not_options() {
        let text = "\
max-connections = 50
# declare an appender
[log.console_appender.stderr]
stream=std_error

[logger.default]
level=info
appenders=stderr,default
";
        let ini = parse(text).unwrap();
        assert_eq!(ini.entries, vec![entry(1, "max-connections", "50")]);
        assert_eq!(
            ini.sections,
            vec![
                IniSection {
                    line: 3,
                    name: "log.console_appender.stderr".into(),
                    keys: 1
                },
                IniSection {
                    line: 6,
                    name: "logger.default".into(),
                    keys: 2
                },
            ]
        );
    }

    #[test]
    fn a_byte_order_mark_is_skipped() {
        let ini = parse("\u{feff}max-connections = 5\n").unwrap();
        assert_eq!(ini.entries, vec![entry(1, "max-connections", "5")]);
    }

    #[test]
    fn bad_lines_name_their_number() {
        let err = parse("max-connections = 5\n\njust words\n").unwrap_err();
        assert_eq!(err.line, 3);
        assert!(err.message.contains("just words"), "{err}");
        assert_eq!(err.to_string().lines().count(), 1);
        let err = parse(" = 5\n").unwrap_err();
        assert_eq!(err.line, 1);
        assert!(err.message.contains("name"), "{err}");
        // A header without its closing bracket is not a section.
        assert_eq!(parse("[log.x\n").unwrap_err().line, 1);
    }

    #[test]
    fn empty_and_comment_only_files_are_empty() {
        assert_eq!(parse("").unwrap(), Ini::default());
        assert_eq!(parse("#\n# x = 1\n\n").unwrap(), Ini::default());
    }
}
