//! Applying the recommendations `check` can fix: every change is printed
//! before it is made; without `yes` nothing is written (a dry run).

use std::io::Write;

use crate::check::{Fix, Setting};

/// What `apply` did (or would do) for one setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Would write `value` to `path` (dry run).
    Would {
        path: String,
        value: String,
    },
    Wrote {
        path: String,
        value: String,
    },
    Failed {
        path: String,
        value: String,
        error: String,
    },
    /// Needs a change this tool cannot make.
    Manual {
        name: String,
        how: String,
    },
}

/// Applies fixes for every setting that does not meet its recommendation,
/// printing each step to `out`.
pub fn apply(
    settings: &[Setting],
    yes: bool,
    out: &mut impl Write,
) -> std::io::Result<Vec<Action>> {
    let mut actions = Vec::new();
    if !yes {
        writeln!(
            out,
            "dry run: nothing will be changed (pass --yes to apply)"
        )?;
    }
    for s in settings.iter().filter(|s| s.ok == Some(false)) {
        match &s.fix {
            Some(Fix::Write { paths, value }) => {
                for path in paths {
                    let p = path.display().to_string();
                    writeln!(
                        out,
                        "{} {}: {} = {value} (now {})",
                        if yes { "setting" } else { "would set" },
                        s.name,
                        p,
                        s.current
                    )?;
                    if !yes {
                        actions.push(Action::Would {
                            path: p,
                            value: value.clone(),
                        });
                        continue;
                    }
                    match std::fs::write(path, value) {
                        Ok(()) => actions.push(Action::Wrote {
                            path: p,
                            value: value.clone(),
                        }),
                        Err(e) => {
                            writeln!(out, "  cannot: {e}")?;
                            actions.push(Action::Failed {
                                path: p,
                                value: value.clone(),
                                error: e.to_string(),
                            });
                        }
                    }
                }
            }
            Some(Fix::Manual { how }) => {
                writeln!(out, "cannot change {} here: {how}", s.name)?;
                actions.push(Action::Manual {
                    name: s.name.clone(),
                    how: how.clone(),
                });
            }
            None => {
                writeln!(out, "no automatic fix for {}: {}", s.name, s.why)?;
                actions.push(Action::Manual {
                    name: s.name.clone(),
                    how: s.why.clone(),
                });
            }
        }
    }
    Ok(actions)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn s(ok: Option<bool>, fix: Option<Fix>) -> Setting {
        Setting {
            name: "x".into(),
            current: "1".into(),
            recommended: "2".into(),
            ok,
            why: "because".into(),
            fix,
        }
    }

    #[test]
    fn dry_run_changes_nothing_and_yes_writes() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("knob");
        std::fs::write(&file, "1").unwrap();
        let settings = vec![
            s(
                Some(false),
                Some(Fix::Write {
                    paths: vec![file.clone()],
                    value: "2".into(),
                }),
            ),
            s(
                Some(true),
                Some(Fix::Write {
                    paths: vec![PathBuf::from("/nonexistent")],
                    value: "9".into(),
                }),
            ),
            s(
                Some(false),
                Some(Fix::Manual {
                    how: "edit limits.conf".into(),
                }),
            ),
            s(None, None),
        ];
        let mut out = Vec::new();
        let actions = apply(&settings, false, &mut out).unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "1",
            "dry run wrote"
        );
        assert!(matches!(&actions[0], Action::Would { value, .. } if value == "2"));
        assert!(matches!(&actions[1], Action::Manual { .. }));
        assert_eq!(
            actions.len(),
            2,
            "ok and informational settings are left alone"
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("dry run") && text.contains("would set"));

        let actions = apply(&settings, true, &mut Vec::new()).unwrap();
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "2");
        assert!(matches!(&actions[0], Action::Wrote { .. }));
    }

    #[test]
    fn dry_run_on_this_host_lists_changes_without_making_them() {
        let dir = tempfile::tempdir().unwrap();
        let settings = crate::check::run(dir.path());
        let before: Vec<String> = settings.iter().map(|s| s.current.clone()).collect();
        let actions = apply(&settings, false, &mut Vec::new()).unwrap();
        assert!(actions
            .iter()
            .all(|a| matches!(a, Action::Would { .. } | Action::Manual { .. })));
        let after: Vec<String> = crate::check::run(dir.path())
            .iter()
            .map(|s| s.current.clone())
            .collect();
        assert_eq!(before.len(), after.len());
    }
}
