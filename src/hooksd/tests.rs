//! Tables for parsing, matching, ordering and masking of hook definitions.

use std::collections::HashMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::*;

fn parse(text: &Value) -> Result<Definition, HooksdError> {
    Definition::parse(&text.to_string(), Path::new("/d/10-x.json"), &|p| {
        p != Path::new("/missing")
    })
}

fn hook(path: &str, args: Option<&[&str]>) -> OciHook {
    let mut hook = OciHook::default();
    hook.set_path(PathBuf::from(path))
        .set_args(args.map(|a| a.iter().map(|s| s.to_string()).collect()));
    hook
}

#[test]
fn parsing_table() {
    struct Case {
        name: &'static str,
        text: Value,
        want: Result<(&'static str, OciHook, Vec<Stage>, bool), &'static [&'static str]>,
    }
    let cases = [
        Case {
            name: "1.0.0 with every hook field",
            text: json!({"version": "1.0.0",
                "hook": {"path": "/h", "args": ["h", "-v"], "env": ["A=1"], "timeout": 5},
                "when": {"always": true}, "stages": ["prestart", "poststop", "prestart"]}),
            want: Ok((
                VERSION,
                {
                    let mut h = hook("/h", Some(&["h", "-v"]));
                    h.set_env(Some(vec!["A=1".into()])).set_timeout(Some(5));
                    h
                },
                vec![Stage::Prestart, Stage::Poststop],
                false,
            )),
        },
        Case {
            name: "0.1.0 arguments follow the path",
            text: json!({"version": "0.1.0", "hook": "/h", "arguments": ["prestart"],
                "cmds": [".*"], "stages": ["createContainer"]}),
            want: Ok((
                LEGACY_VERSION,
                hook("/h", Some(&["/h", "prestart"])),
                vec![Stage::CreateContainer],
                true,
            )),
        },
        Case {
            name: "missing version is legacy, with singular synonyms",
            text: json!({"hook": "/h", "stage": ["startContainer"], "cmd": ["sh"],
                "annotation": ["x"], "hasbindmounts": true}),
            want: Ok((
                LEGACY_VERSION,
                hook("/h", None),
                vec![Stage::StartContainer],
                true,
            )),
        },
        Case {
            name: "bad stage names the stage and the file",
            text: json!({"version": "1.0.0", "hook": {"path": "/h"},
                "when": {"always": true}, "stages": ["createRuntime", "pre-start"]}),
            want: Err(&["\"pre-start\"", "/d/10-x.json", "stages"]),
        },
        Case {
            name: "bad legacy stage names the synonym's field",
            text: json!({"hook": "/h", "stage": ["boot"]}),
            want: Err(&["\"boot\"", "/d/10-x.json"]),
        },
        Case {
            name: "unknown field in hook",
            text: json!({"version": "1.0.0", "hook": {"path": "/h", "argz": []},
                "when": {"always": true}, "stages": ["prestart"]}),
            want: Err(&["argz", "/d/10-x.json"]),
        },
        Case {
            name: "unknown field in when (0.1.0 spelling in a 1.0.0 file)",
            text: json!({"version": "1.0.0", "hook": {"path": "/h"},
                "when": {"hasbindmounts": true}, "stages": ["prestart"]}),
            want: Err(&["hasbindmounts", "/d/10-x.json"]),
        },
        Case {
            name: "unknown top-level field in a legacy file",
            text: json!({"hook": "/h", "stages": ["prestart"], "when": {}}),
            want: Err(&["when", "/d/10-x.json"]),
        },
        Case {
            name: "unsupported version",
            text: json!({"version": "2.0.0", "hook": {"path": "/h"}}),
            want: Err(&["\"2.0.0\"", "/d/10-x.json"]),
        },
        Case {
            name: "empty when",
            text: json!({"version": "1.0.0", "hook": {"path": "/h"}, "when": {},
                "stages": ["prestart"]}),
            want: Err(&["when", "at least one"]),
        },
        Case {
            name: "missing stages",
            text: json!({"version": "1.0.0", "hook": {"path": "/h"}, "when": {"always": true}}),
            want: Err(&["stages"]),
        },
        Case {
            name: "empty stages",
            text: json!({"version": "1.0.0", "hook": {"path": "/h"}, "when": {"always": true},
                "stages": []}),
            want: Err(&["stages", "no stage"]),
        },
        Case {
            name: "both synonyms",
            text: json!({"hook": "/h", "stages": ["prestart"], "stage": ["prestart"]}),
            want: Err(&["stages", "\"stage\""]),
        },
        Case {
            name: "bad command regex",
            text: json!({"version": "1.0.0", "hook": {"path": "/h"},
                "when": {"commands": ["ok", "(unclosed"]}, "stages": ["prestart"]}),
            want: Err(&["when.commands[1]", "(unclosed"]),
        },
        Case {
            name: "bad annotation value regex",
            text: json!({"version": "1.0.0", "hook": {"path": "/h"},
                "when": {"annotations": {"k": "[z-a]"}}, "stages": ["prestart"]}),
            want: Err(&["when.annotations[\"k\"]"]),
        },
        Case {
            name: "relative hook path",
            text: json!({"version": "1.0.0", "hook": {"path": "bin/h"},
                "when": {"always": true}, "stages": ["prestart"]}),
            want: Err(&["hook.path", "absolute"]),
        },
        Case {
            name: "hook executable missing",
            text: json!({"version": "1.0.0", "hook": {"path": "/missing"},
                "when": {"always": true}, "stages": ["prestart"]}),
            want: Err(&["hook.path", "/missing does not exist"]),
        },
        Case {
            name: "env without =",
            text: json!({"version": "1.0.0", "hook": {"path": "/h", "env": ["A=1", "B"]},
                "when": {"always": true}, "stages": ["prestart"]}),
            want: Err(&["hook.env[1]", "\"B\""]),
        },
        Case {
            name: "non-positive timeout",
            text: json!({"version": "1.0.0", "hook": {"path": "/h", "timeout": 0},
                "when": {"always": true}, "stages": ["prestart"]}),
            want: Err(&["hook.timeout"]),
        },
        Case {
            name: "not JSON",
            text: json!("just a string"),
            want: Err(&["/d/10-x.json"]),
        },
    ];
    for case in cases {
        let got = parse(&case.text);
        match (got, case.want) {
            (Ok(def), Ok((version, hook, stages, any_of))) => {
                assert_eq!(def.version, version, "{}", case.name);
                assert_eq!(def.hook, hook, "{}", case.name);
                assert_eq!(def.stages, stages, "{}", case.name);
                assert_eq!(def.when.any_of, any_of, "{}", case.name);
            }
            (Err(err), Err(needles)) => {
                let msg = err.to_string();
                for needle in needles {
                    assert!(
                        msg.contains(needle),
                        "{}: {msg:?} lacks {needle:?}",
                        case.name
                    );
                }
            }
            (got, want) => panic!("{}: got {got:?}, want {want:?}", case.name),
        }
    }
}

fn subject<'a>(
    annotations: &'a HashMap<String, String>,
    command: Option<Option<&'a str>>,
    bind: bool,
) -> Subject<'a> {
    Subject {
        annotations: Some(annotations),
        command,
        has_bind_mounts: bind,
    }
}

#[test]
fn matching_table() {
    let annotations: HashMap<String, String> = [
        ("com.example.department", "fluid-dynamics"),
        ("io.cdirun.gpu.count", "2"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let none = HashMap::new();
    let v1 = |when: Value| json!({"version": "1.0.0", "hook": {"path": "/h"}, "when": when, "stages": ["prestart"]});
    let legacy = |mut extra: Value| {
        extra["hook"] = json!("/h");
        extra["stages"] = json!(["prestart"]);
        extra
    };
    let app = Some(Some("/usr/bin/app"));
    #[rustfmt::skip]
    let cases: Vec<(&str, Value, Subject, bool)> = vec![
        ("always true", v1(json!({"always": true})), subject(&none, app, false), true),
        ("always false", v1(json!({"always": false})), subject(&none, app, false), false),
        ("annotation key and value match",
            v1(json!({"annotations": {"^com\\.example\\.department$": "fluid"}})),
            subject(&annotations, app, false), true),
        ("annotation value is unanchored",
            v1(json!({"annotations": {"department": "dyn"}})), subject(&annotations, app, false), true),
        ("annotation key matches, value does not",
            v1(json!({"annotations": {"department": "^solid"}})), subject(&annotations, app, false), false),
        ("value matches under another key only",
            v1(json!({"annotations": {"gpu": "fluid"}})), subject(&annotations, app, false), false),
        ("every annotation pair must match",
            v1(json!({"annotations": {"department": "fluid", "gpu.count": "^4$"}})),
            subject(&annotations, app, false), false),
        ("no annotations at all", v1(json!({"annotations": {".*": ".*"}})), subject(&none, app, false), false),
        ("command matches the full args[0]",
            v1(json!({"commands": ["^/usr/bin/app$"]})), subject(&none, app, false), true),
        ("a basename pattern anchored at the start does not match a full path",
            v1(json!({"commands": ["^app$"]})), subject(&none, app, false), false),
        ("any command pattern is enough",
            v1(json!({"commands": ["^sh$", "/app$"]})), subject(&none, app, false), true),
        ("no process: the commands condition is skipped and nothing else is set",
            v1(json!({"commands": [".*"]})), subject(&none, None, false), false),
        ("hasBindMounts true with bind mounts", v1(json!({"hasBindMounts": true})), subject(&none, app, true), true),
        ("hasBindMounts true without", v1(json!({"hasBindMounts": true})), subject(&none, app, false), false),
        ("hasBindMounts false never matches", v1(json!({"hasBindMounts": false})), subject(&none, app, false), false),
        ("1.0.0 ANDs: always and a failing command",
            v1(json!({"always": true, "commands": ["^/bin/sh$"]})), subject(&none, app, false), false),
        ("1.0.0 ANDs: all hold",
            v1(json!({"always": true, "commands": ["app"], "hasBindMounts": true,
                      "annotations": {"gpu": "2"}})),
            subject(&annotations, app, true), true),
        ("0.1.0 any-of: command fails, bind mounts hold",
            legacy(json!({"cmds": ["^/bin/sh$"], "hasbindmounts": true})), subject(&none, app, true), true),
        ("0.1.0 any-of: nothing holds",
            legacy(json!({"cmds": ["^/bin/sh$"], "hasbindmounts": true})), subject(&none, app, false), false),
        ("0.1.0 annotations match values of any key",
            legacy(json!({"annotations": ["^2$", "nothing"]})), subject(&annotations, app, false), true),
        ("0.1.0 annotations do not match keys",
            legacy(json!({"annotations": ["department"]})), subject(&annotations, app, false), false),
        ("0.1.0 without conditions never matches", legacy(json!({})), subject(&annotations, app, true), false),
    ];
    for (name, text, subject, want) in cases {
        let def = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(def.matches(&subject).unwrap(), want, "{name}");
    }
}

#[test]
fn empty_args_with_a_commands_condition_is_an_error_naming_the_file() {
    let def = parse(&json!({"version": "1.0.0", "hook": {"path": "/h"},
        "when": {"commands": ["x"]}, "stages": ["prestart"]}))
    .unwrap();
    let none = HashMap::new();
    let err = def.matches(&subject(&none, Some(None), false)).unwrap_err();
    assert!(err.to_string().contains("/d/10-x.json"), "{err}");
}

#[test]
fn bind_mounts_are_found_by_type_or_option() {
    let spec = |mounts: Value| -> Spec {
        serde_json::from_value(json!({"ociVersion": "1.0.2", "mounts": mounts})).unwrap()
    };
    assert!(!has_bind_mounts(&spec(json!([
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}
    ]))));
    assert!(has_bind_mounts(&spec(json!([
        {"destination": "/data", "type": "bind", "source": "/srv"}
    ]))));
    assert!(has_bind_mounts(&spec(json!([
        {"destination": "/data", "source": "/srv", "options": ["rbind", "ro"]}
    ]))));
}

fn write(dir: &Path, name: &str, text: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(name), text).unwrap();
}

/// A valid definition whose hook is `/bin/<tag>`, so a loaded one tells which file it came from.
fn valid(tag: &str) -> String {
    json!({"version": "1.0.0", "hook": {"path": format!("/bin/{tag}")},
           "when": {"always": true}, "stages": ["poststop"]})
    .to_string()
}

const BROKEN: &str = "{not json";

fn load_tagged(dirs: &[PathBuf]) -> (Vec<Definition>, Vec<Problem>) {
    load_with(dirs, &|_| true)
}

#[test]
fn definitions_are_ordered_by_lowercased_name_across_dirs_and_later_dirs_mask() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, missing) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("none"),
    );
    write(&a, "02-mid.json", &valid("mid"));
    write(&a, "01-first.json", &valid("first"));
    write(&a, "10-masked.json", &valid("masked"));
    write(&a, "README", "not a definition");
    write(&a, "03-x.json.bak", "{}");
    write(&b, "10-masked.json", &valid("masking"));
    write(&b, "01-UPPER.json", &valid("upper"));
    write(&b, "00-early.json", &valid("early"));
    let (definitions, problems) = load_tagged(&[a.clone(), missing, b.clone()]);
    assert!(problems.is_empty(), "{problems:?}");
    let got: Vec<(PathBuf, PathBuf)> = definitions
        .into_iter()
        .map(|d| (d.file, d.hook.path().clone()))
        .collect();
    let want = [
        (b.join("00-early.json"), "/bin/early"),
        (a.join("01-first.json"), "/bin/first"),
        (b.join("01-UPPER.json"), "/bin/upper"),
        (a.join("02-mid.json"), "/bin/mid"),
        (b.join("10-masked.json"), "/bin/masking"),
    ]
    .map(|(file, hook)| (file, PathBuf::from(hook)));
    assert_eq!(got, want);
}

/// Regression: a broken file in a later dir masked the valid same-named file of an earlier
/// dir, so with on-error = "skip" the hook silently disappeared. Each row: what dirs a, b and c
/// hold for one file name (None: no such file), the hook that is in effect, and for each
/// problem reported, the dir of the broken file and the dir whose file stays in effect.
#[test]
fn only_a_valid_file_masks_and_a_problem_names_the_file_in_effect() {
    type Row = (
        [Option<&'static str>; 3],
        Option<&'static str>,
        &'static [(&'static str, Option<&'static str>)],
    );
    let rows: [Row; 7] = [
        (
            [Some("a"), Some(BROKEN), None],
            Some("a"),
            &[("b", Some("a"))],
        ),
        (
            [Some("a"), Some(BROKEN), Some(BROKEN)],
            Some("a"),
            &[("b", Some("a")), ("c", Some("a"))],
        ),
        (
            [Some("a"), Some("b"), Some(BROKEN)],
            Some("b"),
            &[("c", Some("b"))],
        ),
        ([Some(BROKEN), Some("b"), None], Some("b"), &[]),
        ([Some("a"), Some(BROKEN), Some("c")], Some("c"), &[]),
        (
            [Some(BROKEN), Some(BROKEN), None],
            None,
            &[("a", None), ("b", None)],
        ),
        ([None, Some(BROKEN), None], None, &[("b", None)]),
    ];
    for (files, in_effect, want_problems) in rows {
        let tmp = tempfile::tempdir().unwrap();
        let dirs = ["a", "b", "c"].map(|d| tmp.path().join(d));
        for (dir, text) in dirs.iter().zip(files) {
            fs::create_dir_all(dir).unwrap();
            if let Some(text) = text {
                let text = if text == BROKEN {
                    text.to_owned()
                } else {
                    valid(text)
                };
                write(dir, "10-x.json", &text);
            }
        }
        let (definitions, problems) = load_tagged(&dirs);
        let got: Vec<PathBuf> = definitions.iter().map(|d| d.hook.path().clone()).collect();
        let want: Vec<PathBuf> = in_effect
            .iter()
            .map(|t| format!("/bin/{t}").into())
            .collect();
        assert_eq!(got, want, "{files:?}");
        let file = |dir: &str| tmp.path().join(dir).join("10-x.json");
        let got: Vec<(PathBuf, Option<PathBuf>)> = problems
            .iter()
            .map(|p| match &p.error {
                HooksdError::Parse { file, .. } => (file.clone(), p.in_effect.clone()),
                other => panic!("{other}"),
            })
            .collect();
        let want: Vec<(PathBuf, Option<PathBuf>)> = want_problems
            .iter()
            .map(|(dir, kept)| (file(dir), kept.map(file)))
            .collect();
        assert_eq!(got, want, "{files:?}");
        for problem in &problems {
            let msg = problem.to_string();
            match &problem.in_effect {
                Some(kept) => assert!(
                    msg.ends_with(&format!("; {} stays in effect", kept.display())),
                    "{msg}"
                ),
                None => assert!(!msg.contains("stays in effect"), "{msg}"),
            }
        }
    }
}

#[test]
fn load_reports_each_broken_file_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    write(
        &a,
        "02-bad.json",
        r#"{"version": "1.0.0", "hook": {"path": "/bin/sh"}, "when": {"always": true}, "stages": ["afterStop"]}"#,
    );
    write(&a, "01-good.json", &valid("sh"));
    let (definitions, problems) = load(std::slice::from_ref(&a));
    assert_eq!(definitions.len(), 1);
    assert_eq!(definitions[0].file, a.join("01-good.json"));
    assert_eq!(problems.len(), 1);
    let msg = problems[0].to_string();
    assert!(msg.contains("\"afterStop\""), "{msg}");
    assert!(
        msg.contains(&a.join("02-bad.json").display().to_string()),
        "{msg}"
    );
}

#[test]
fn shipped_examples_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks/hooks.d");
    let mut problems = Vec::new();
    let names = dir_files(&dir, &mut problems);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(names.len(), 3, "{names:?}");
    for (_, file) in names {
        let text = fs::read_to_string(&file).unwrap();
        let def = Definition::parse(&text, &file, &|p| p == Path::new("/usr/bin/cdirun-hook"))
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(def.stages, [Stage::CreateContainer], "{}", file.display());
        assert_eq!(def.hook.args().as_ref().unwrap()[0], "cdirun-hook");
        // Opt-in: nothing matches a container without annotations.
        let none = HashMap::new();
        assert!(
            !def.matches(&subject(&none, Some(Some("/bin/sh")), true))
                .unwrap()
        );
    }
}
