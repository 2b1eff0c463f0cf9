//! The retouching plugins the server knows, with their parameters and ranges (the API notes'
//! table, documented for users in `docs/plugins.md`), and the check of a watch's payload
//! against them before any credit is spent: a misspelt plugin or parameter gets a "did you
//! mean", a value out of range its range. A plugin newer than this table can still be sent,
//! on purpose, with `allow_unknown_plugins = true` on the watch (then unknown names only warn).

use serde_json::Value;

/// One parameter of a plugin: what it does and its range (from 0).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Param {
    pub meaning: &'static str,
    pub max: f64,
}

/// A plugin and what its task may say.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Plugin {
    pub name: &'static str,
    pub alpha1: Option<Param>,
    pub alpha2: Option<Param>,
    /// `Scale` is the dirt size (Clean Backdrop, Dust) rather than the framing (0..3).
    pub scale_is_dirt_size: bool,
    /// Takes `Automask` (Clean Backdrop).
    pub automask: bool,
    /// Configured by named fields / a `User Params` object rather than Alpha1/Alpha2.
    pub user_params: bool,
    /// Its named fields (in the task, or in its `User Params`), with what each takes.
    pub named: &'static [Named],
    /// Must be the first task (Face Detection feeds the face-aware plugins after it).
    pub first: bool,
    /// Accepted only with `Layer = 0` (Color Correction).
    pub flat_only: bool,
    /// Works on the faces it finds: on a photo without one it does little for its credit.
    pub face_aware: bool,
}

/// A named field of a plugin and what it takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Named {
    pub field: &'static str,
    pub takes: Takes,
}

/// What a named field takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Takes {
    /// A number in this range.
    Range(f64, f64),
    /// A whole number in this range.
    Whole(u64, u64),
    /// One of these words.
    OneOf(&'static [&'static str]),
}

const fn named(field: &'static str, takes: Takes) -> Named {
    Named { field, takes }
}

const FACE_LIFTING: &[Named] = &[
    named("face_lifting_version", Takes::Whole(1, 3)),
    named("Face Lifting", Takes::Range(0.0, 1.0)),
    named("Face Masculinity", Takes::Range(0.0, 1.0)),
    named("Double Chin Correction", Takes::Range(0.0, 1.0)),
    named("Face Lifting Depth", Takes::Range(0.0, 1.0)),
    named("Flow Smoothing", Takes::Range(0.0, 1.0)),
];

const GLASSES: &[Named] =
    &[named("Glasses Glare Removal", Takes::Range(0.0, 1.0)), named("LayoutMode", Takes::OneOf(&["full", "patch"]))];

/// Color Correction's `User Params`: `{ AI = { "Color Correction Mode" = … }, Basic = { "Enable Basic" = true } }`.
const COLOR_CORRECTION_MODES: &[&str] = &["Exposure only", "Exposure & WB", "Full"];

const fn blend(max: f64) -> Option<Param> {
    Some(Param { meaning: "Blend", max })
}

const fn plugin(name: &'static str, alpha1: Option<Param>, alpha2: Option<Param>) -> Plugin {
    Plugin {
        name,
        alpha1,
        alpha2,
        scale_is_dirt_size: false,
        automask: false,
        user_params: false,
        named: &[],
        first: false,
        flat_only: false,
        face_aware: false,
    }
}

const fn named_fields(name: &'static str, named: &'static [Named]) -> Plugin {
    Plugin { user_params: true, named, ..plugin(name, None, None) }
}

/// Every documented plugin, in the recommended task order.
pub const PLUGINS: &[Plugin] = &[
    plugin("Skin Mask", Some(Param { meaning: "Sensitivity", max: 2.0 }), None),
    Plugin { scale_is_dirt_size: true, automask: true, ..plugin("Clean Backdrop", blend(1.0), None) },
    plugin("Heal", Some(Param { meaning: "Sensitivity", max: 1.0 }), None),
    plugin("Fabric", blend(2.0), None),
    Plugin { scale_is_dirt_size: true, ..plugin("Dust", blend(2.0), None) },
    Plugin { face_aware: true, ..plugin("Eye Vessels", blend(1.0), None) },
    Plugin { face_aware: true, ..plugin("Eye Brilliance", blend(2.0), None) },
    Plugin {
        face_aware: true,
        ..plugin(
            "White Teeth",
            Some(Param { meaning: "Whiten", max: 1.0 }),
            Some(Param { meaning: "Brighten", max: 1.0 }),
        )
    },
    plugin("Mattifier", blend(1.0), None),
    plugin("Dodge Burn", blend(2.0), Some(Param { meaning: "Warmth", max: 1.0 })),
    plugin("Skin Tone", blend(2.0), Some(Param { meaning: "Tone Smoothing", max: 2.0 })),
    plugin("Portrait Volumes", blend(2.0), None),
    Plugin { first: true, face_aware: true, ..named_fields("Face Detection", &[]) },
    Plugin { face_aware: true, ..named_fields("Face Lifting", FACE_LIFTING) },
    Plugin { face_aware: true, ..named_fields("Glasses Anti Glare", GLASSES) },
    Plugin { flat_only: true, ..named_fields("Color Correction", &[]) },
    named_fields("Crop", &[]),
];

/// The fields a task may have.
const TASK_FIELDS: &[&str] = &["Plugin", "Alpha1", "Alpha2", "Scale", "Automask", "Layer", "User Params"];
/// The payload's own fields.
const PAYLOAD_FIELDS: &[&str] = &["mode", "tasks", "outputFormat"];

pub fn find(name: &str) -> Option<&'static Plugin> {
    PLUGINS.iter().find(|p| p.name == name)
}

/// Whether the plugin `name` works on faces (Face Detection, the eye, teeth, lifting and glasses
/// plugins), compared without regard to case.
pub fn is_face_aware(name: &str) -> bool {
    PLUGINS.iter().any(|p| p.face_aware && crate::vocab::same_plugin(p.name, name))
}

/// The closest of `candidates` to `word`, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let lower = word.to_lowercase();
    candidates
        .into_iter()
        .map(|c| (strsim::normalized_damerau_levenshtein(&lower, &c.to_lowercase()), c))
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

fn suggestion<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> String {
    did_you_mean(word, candidates).map(|c| format!("; did you mean \"{c}\"?")).unwrap_or_default()
}

/// What is wrong with a payload: `(key below the payload, message)` pairs for errors, and
/// warnings. `allow_unknown`: unknown plugins and fields only warn.
#[derive(Debug, Default, PartialEq)]
pub struct Findings {
    pub errors: Vec<(String, String)>,
    pub warnings: Vec<(String, String)>,
}

/// Checks a payload (as JSON) against the plugin table.
pub fn check_payload(payload: &Value, allow_unknown: bool) -> Findings {
    let mut f = Findings::default();
    let unknown = |f: &mut Findings, key: String, message: String| {
        if allow_unknown {
            f.warnings.push((key, format!("{message} (sent anyway: allow_unknown_plugins = true)")));
        } else {
            f.errors.push((
                key,
                format!(
                    "{message} (if it is newer than retouchd's list, set allow_unknown_plugins = true on the watch)"
                ),
            ));
        }
    };
    let Some(fields) = payload.as_object() else {
        f.errors.push((String::new(), "must be a table with mode and tasks".into()));
        return f;
    };
    for name in fields.keys().filter(|k| !PAYLOAD_FIELDS.contains(&k.as_str())) {
        let hint = suggestion(name, PAYLOAD_FIELDS.iter().copied());
        unknown(&mut f, name.clone(), format!("`{name}` is not a payload field (mode, tasks, outputFormat){hint}"));
    }
    match payload.get("mode") {
        Some(Value::String(m)) if m == "professional" => {}
        Some(other) => {
            f.errors.push(("mode".into(), format!("{other} is not a mode; the server knows \"professional\"")))
        }
        None => f.errors.push(("mode".into(), "missing; the server needs mode = \"professional\"".into())),
    }
    match payload.get("outputFormat") {
        None => {}
        Some(Value::String(o)) if o == "zip" || o == "jpeg" => {}
        Some(other) => f.errors.push(("outputFormat".into(), format!("{other} is not \"zip\" or \"jpeg\""))),
    }
    let tasks = match payload.get("tasks").and_then(Value::as_array) {
        Some(tasks) if !tasks.is_empty() => tasks,
        _ => {
            f.errors
                .push(("tasks".into(), "missing or empty; list at least one task, e.g. { Plugin = \"Heal\" }".into()));
            return f;
        }
    };
    for (n, task) in tasks.iter().enumerate() {
        let at = |field: &str| format!("tasks[{n}].{field}");
        let Some(task) = task.as_object() else {
            f.errors.push((format!("tasks[{n}]"), "must be a table like { Plugin = \"Heal\", Layer = 1 }".into()));
            continue;
        };
        let plugin = match task.get("Plugin") {
            Some(Value::String(name)) => match find(name) {
                Some(p) => Some(p),
                None => {
                    let hint = suggestion(name, PLUGINS.iter().map(|p| p.name));
                    unknown(&mut f, at("Plugin"), format!("`{name}` is not a known plugin{hint}"));
                    None
                }
            },
            Some(other) => {
                f.errors.push((at("Plugin"), format!("{other} is not a plugin name")));
                None
            }
            None => {
                f.errors.push((at("Plugin"), "missing; name the plugin, e.g. \"Heal\"".into()));
                None
            }
        };
        let own: &[Named] = plugin.map_or(&[], |p| p.named);
        let known = |k: &str| TASK_FIELDS.contains(&k) || own.iter().any(|n| n.field == k);
        for name in task.keys().filter(|k| !known(k)) {
            let hint = suggestion(name, TASK_FIELDS.iter().copied().chain(own.iter().map(|n| n.field)));
            unknown(&mut f, at(name), format!("`{name}` is not a task field{hint}"));
        }
        let Some(plugin) = plugin else { continue };
        if plugin.first && n > 0 {
            f.errors.push((
                at("Plugin"),
                format!(
                    "{} must be the first task (it feeds the face-aware plugins after it); move it to the top",
                    plugin.name
                ),
            ));
        }
        check_task(&mut f, plugin, task, &at);
        check_named(&mut f, plugin, task, &at, &unknown);
    }
    f
}

/// The fields of one task of a known plugin.
fn check_task(f: &mut Findings, plugin: &Plugin, task: &serde_json::Map<String, Value>, at: &dyn Fn(&str) -> String) {
    let name = plugin.name;
    for (field, param) in [("Alpha1", plugin.alpha1), ("Alpha2", plugin.alpha2)] {
        match (task.get(field), param) {
            (None, _) => {}
            (Some(_), None) if plugin.user_params => {
                f.errors.push((at(field), format!("{name} takes named fields or \"User Params\", not {field}")))
            }
            (Some(_), None) => f.errors.push((at(field), format!("{name} has no {field}"))),
            (Some(v), Some(p)) => match v.as_f64() {
                Some(x) if (0.0..=p.max).contains(&x) => {}
                Some(_) => f.errors.push((
                    at(field),
                    format!("{v} is out of range: {name}'s {field} ({}) is 0 to {}", p.meaning, p.max),
                )),
                None => f.errors.push((
                    at(field),
                    format!(
                        "{v} is not a number; write it without quotes: {name}'s {field} ({}) is 0 to {}",
                        p.meaning, p.max
                    ),
                )),
            },
        }
    }
    let scale_ok = |v: &Value| match plugin.scale_is_dirt_size {
        true => v.as_f64().is_some_and(|x| x >= 0.0),
        false => v.as_u64().is_some_and(|x| x <= 3),
    };
    if let Some(v) = task.get("Scale").filter(|v| !scale_ok(v)) {
        let message = match plugin.scale_is_dirt_size {
            true => format!("{v} is not a dirt size (a number from 0)"),
            false => format!("{v} is not a scale: 0 auto, 1 face close-up, 2 half body, 3 full body"),
        };
        f.errors.push((at("Scale"), message));
    }
    match task.get("Automask") {
        None => {}
        Some(Value::Bool(_)) if plugin.automask => {}
        Some(Value::Bool(_)) => {
            f.errors.push((at("Automask"), format!("only Clean Backdrop takes Automask, not {name}")))
        }
        Some(v) => f.errors.push((at("Automask"), format!("{v} is not true or false"))),
    }
    if let Some(v) = task.get("Layer")
        && !matches!(v.as_u64(), Some(0 | 1))
    {
        f.errors.push((at("Layer"), format!("{v} is not 0 (one retouched image) or 1 (a layer of its own)")));
    }
    if let Some(v) = task.get("User Params")
        && !v.is_object()
    {
        f.errors.push((at("User Params"), format!("{v} is not a table of named fields")));
    }
}

/// A plugin's named fields, `Layer` rules and `User Params`.
fn check_named(
    f: &mut Findings,
    plugin: &Plugin,
    task: &serde_json::Map<String, Value>,
    at: &dyn Fn(&str) -> String,
    unknown: &dyn Fn(&mut Findings, String, String),
) {
    let name = plugin.name;
    let params = task.get("User Params").and_then(Value::as_object);
    for spec in plugin.named {
        let found = task.get(spec.field).map(|v| (at(spec.field), v)).or_else(|| {
            params.and_then(|p| p.get(spec.field)).map(|v| (at(&format!("User Params.{}", spec.field)), v))
        });
        let Some((key, v)) = found else { continue };
        let problem = match spec.takes {
            Takes::Range(lo, hi) => match v.as_f64() {
                Some(x) if (lo..=hi).contains(&x) => None,
                Some(_) => Some(format!("{v} is out of range: {name}'s \"{}\" is {lo} to {hi}", spec.field)),
                None => Some(format!(
                    "{v} is not a number (write it without quotes): {name}'s \"{}\" is {lo} to {hi}",
                    spec.field
                )),
            },
            Takes::Whole(lo, hi) => match v.as_u64() {
                Some(x) if (lo..=hi).contains(&x) => None,
                _ => Some(format!("{v} is not a whole number from {lo} to {hi} ({name}'s \"{}\")", spec.field)),
            },
            Takes::OneOf(words) => match v.as_str() {
                Some(w) if words.contains(&w) => None,
                _ => Some(format!("{v} is not one of {words:?} ({name}'s \"{}\")", spec.field)),
            },
        };
        if let Some(problem) = problem {
            f.errors.push((key, problem));
        }
    }
    if let Some(p) = params.filter(|_| !plugin.named.is_empty()) {
        for key in p.keys().filter(|k| !plugin.named.iter().any(|n| n.field == k.as_str())) {
            let hint = suggestion(key, plugin.named.iter().map(|n| n.field));
            unknown(f, at(&format!("User Params.{key}")), format!("`{key}` is not one of {name}'s fields{hint}"));
        }
    }
    let layered = wants_layer(&Value::Object(task.clone()));
    if plugin.flat_only && layered {
        f.errors.push((
            at("Layer"),
            format!("{name} is accepted only with Layer = 0 (one retouched image); set Layer = 0"),
        ));
    }
    if name == "Color Correction" {
        check_color_correction(f, params, at, unknown);
    }
    if crate::render::roles::role_of(name) == crate::render::roles::Role::Flow && layered {
        f.warnings.push((
            at("Layer"),
            "Face Lifting as a layer comes back as a flow layer (a deformation) that retouchd cannot apply locally \
             yet: the layers are delivered without a finished photo, with a note. For a finished photo with Face \
             Lifting applied, set Layer = 0 on every task (the server then returns one flat image)"
                .into(),
        ));
    }
}

/// Color Correction's `User Params`: its mode (one of three) and `Enable Basic`.
fn check_color_correction(
    f: &mut Findings,
    params: Option<&serde_json::Map<String, Value>>,
    at: &dyn Fn(&str) -> String,
    unknown: &dyn Fn(&mut Findings, String, String),
) {
    let Some(params) = params else { return };
    for (key, value) in params {
        match (key.as_str(), value) {
            ("AI", Value::Object(ai)) => {
                for (k, v) in ai {
                    match (k.as_str(), v.as_str()) {
                        ("Color Correction Mode", Some(mode)) if COLOR_CORRECTION_MODES.contains(&mode) => {}
                        ("Color Correction Mode", _) => f.errors.push((
                            at("User Params.AI.Color Correction Mode"),
                            format!("{v} is not one of {COLOR_CORRECTION_MODES:?}"),
                        )),
                        _ => unknown(
                            f,
                            at(&format!("User Params.AI.{k}")),
                            format!("`{k}` is not a Color Correction AI field (\"Color Correction Mode\")"),
                        ),
                    }
                }
            }
            ("Basic", Value::Object(basic)) => {
                for (k, v) in basic {
                    match (k.as_str(), v) {
                        ("Enable Basic", Value::Bool(_)) => {}
                        ("Enable Basic", _) => {
                            f.errors.push((at("User Params.Basic.Enable Basic"), format!("{v} is not true or false")))
                        }
                        _ => unknown(
                            f,
                            at(&format!("User Params.Basic.{k}")),
                            format!("`{k}` is not a Color Correction Basic field (\"Enable Basic\")"),
                        ),
                    }
                }
            }
            ("AI" | "Basic", other) => {
                f.errors.push((at(&format!("User Params.{key}")), format!("{other} is not a table")))
            }
            _ => unknown(
                f,
                at(&format!("User Params.{key}")),
                format!("`{key}` is not a Color Correction field (AI, Basic){}", suggestion(key, ["AI", "Basic"])),
            ),
        }
    }
}

/// Whether a task asks for a layer of its own (`Layer = 1`, or `true` as some clients send).
pub fn wants_layer(task: &Value) -> bool {
    match task.get("Layer") {
        Some(Value::Number(n)) => n.as_f64() == Some(1.0),
        Some(Value::Bool(b)) => *b,
        _ => false,
    }
}

/// Whether a payload has a task asking for a layer: the server then answers with layers.
pub fn asks_for_layers(payload: &Value) -> bool {
    payload.get("tasks").and_then(Value::as_array).is_some_and(|tasks| tasks.iter().any(wants_layer))
}

/// The plugins of a payload's tasks, as (name, whether it comes back as a layer).
pub fn task_plugins(payload: &Value) -> Vec<(String, bool)> {
    let tasks = payload.get("tasks").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    tasks.iter().filter_map(|t| Some((t.get("Plugin")?.as_str()?.to_string(), wants_layer(t)))).collect()
}

/// Why an opacity given for `name` would change nothing, or `None` when it names one of the
/// `layers` it applies to (a payload's layer tasks, or a result's layer files). `flattened`:
/// plugins the server flattens into the photo (Layer = 0), which no opacity reaches.
pub fn opacity_name_problem(name: &str, layers: &[&str], flattened: &[&str]) -> Option<String> {
    if layers.iter().any(|l| crate::vocab::same_plugin(l, name)) {
        return None;
    }
    let list = if layers.is_empty() { "none".to_string() } else { layers.join(", ") };
    if flattened.iter().any(|l| crate::vocab::same_plugin(l, name)) {
        return Some(format!(
            "\"{name}\" has Layer = 0: the server flattens it into the photo, so an opacity for it changes \
             nothing (the layers: {list}); give its task Layer = 1 to set its strength here"
        ));
    }
    if let Some(plugin) = PLUGINS.iter().find(|p| crate::vocab::same_plugin(p.name, name)) {
        return Some(format!(
            "\"{}\" is not among the layers ({list}), so an opacity for it changes nothing; add it to the \
             payload's tasks with Layer = 1, or remove this line",
            plugin.name
        ));
    }
    let all = layers.iter().copied().chain(PLUGINS.iter().map(|p| p.name));
    Some(format!("\"{name}\" is not a plugin{}; the layers are: {list}", suggestion(name, all)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_quoted_number_is_told_to_lose_its_quotes_not_that_it_is_out_of_range() {
        let found = errors(json!({"mode": "professional", "tasks": [{"Plugin": "Heal", "Alpha1": "1", "Layer": 1}]}));
        assert!(found.iter().any(|(_, m)| m.contains("not a number") && m.contains("without quotes")), "{found:?}");
        assert!(!found.iter().any(|(_, m)| m.contains("out of range")), "{found:?}");
    }

    #[test]
    fn an_opacity_must_name_a_layer_and_a_typo_gets_a_suggestion() {
        let layers = ["Heal", "Dodge Burn"];
        assert_eq!(opacity_name_problem("dodge burn", &layers, &[]), None);
        let typo = opacity_name_problem("Dodge Brun", &layers, &[]).unwrap();
        assert!(typo.contains("did you mean \"Dodge Burn\"?"), "{typo}");
        let absent = opacity_name_problem("Eye Vessels", &layers, &[]).unwrap();
        assert!(absent.contains("not among the layers (Heal, Dodge Burn)"), "{absent}");
        let flat = opacity_name_problem("Heal", &["Dodge Burn"], &["Heal"]).unwrap();
        assert!(flat.contains("Layer = 0"), "{flat}");
        let payload = json!({"tasks": [{"Plugin": "Heal", "Layer": 1}, {"Plugin": "Skin Tone", "Layer": 0}]});
        assert_eq!(task_plugins(&payload), [("Heal".to_string(), true), ("Skin Tone".to_string(), false)]);
    }

    fn errors(payload: Value) -> Vec<(String, String)> {
        check_payload(&payload, false).errors
    }

    #[test]
    fn the_documented_example_passes() {
        let payload = json!({"mode": "professional", "tasks": [
            {"Plugin": "Heal", "Alpha1": 1, "Scale": 0, "Layer": 1},
            {"Plugin": "Dodge Burn", "Alpha1": 1, "Alpha2": 0, "Layer": 1},
            {"Plugin": "Clean Backdrop", "Alpha1": 0.5, "Scale": 7, "Automask": true, "Layer": 0},
            {"Plugin": "Crop", "User Params": {"ratio": "4:5"}}]});
        assert_eq!(check_payload(&payload, false), Findings::default());
    }

    #[test]
    fn typos_get_a_suggestion_and_ranges_are_named() {
        let found = errors(json!({"mode": "pro", "tasks": [
            {"Plugin": "heal", "Alpha1": 1},
            {"Plugin": "Dodge Burn", "Alpha1": 7, "Alpha3": 1, "Layer": 2},
            {"Plugin": "Skin Smoothing"},
            {"Plugin": "Heal", "Scale": 9, "Automask": true, "Alpha2": 1}]}));
        let text = |key: &str| found.iter().find(|(k, _)| k == key).map(|(_, m)| m.clone()).unwrap_or_default();
        assert!(text("mode").contains("\"professional\""), "{found:?}");
        assert!(text("tasks[0].Plugin").contains("did you mean \"Heal\"?"), "{found:?}");
        assert!(text("tasks[1].Alpha1").contains("0 to 2"), "{found:?}");
        assert!(text("tasks[1].Alpha3").contains("did you mean \"Alpha"), "{found:?}");
        assert!(text("tasks[1].Layer").contains("is not 0"), "{found:?}");
        assert!(
            text("tasks[2].Plugin").contains("not a known plugin")
                && text("tasks[2].Plugin").contains("allow_unknown_plugins")
        );
        assert!(text("tasks[3].Scale").contains("3 full body"), "{found:?}");
        assert!(text("tasks[3].Automask").contains("only Clean Backdrop"), "{found:?}");
        assert!(text("tasks[3].Alpha2").contains("Heal has no Alpha2"), "{found:?}");
    }

    #[test]
    fn unknown_plugins_only_warn_when_allowed() {
        let found =
            check_payload(&json!({"mode": "professional", "tasks": [{"Plugin": "Future Magic", "Strength": 3}]}), true);
        assert!(found.errors.is_empty(), "{found:?}");
        assert_eq!(found.warnings.len(), 2, "{found:?}");
    }

    #[test]
    fn the_user_documentation_lists_every_plugin_with_its_ranges() {
        let doc = include_str!("../docs/plugins.md");
        for p in PLUGINS {
            assert!(doc.contains(p.name), "{} missing from docs/plugins.md", p.name);
            for param in [p.alpha1, p.alpha2].into_iter().flatten() {
                let range = format!("{} 0..{}", param.meaning, param.max);
                let row = doc.lines().find(|l| l.starts_with(&format!("| {} |", p.name))).unwrap_or_default();
                assert!(row.contains(&range), "{}: `{range}` missing from its row `{row}`", p.name);
            }
        }
    }

    #[test]
    fn the_fuller_documents_plugins_are_checked_field_by_field() {
        let good = json!({"mode": "professional", "outputFormat": "zip", "tasks": [
            {"Plugin": "Face Detection"},
            {"Plugin": "Skin Tone", "Alpha1": 1, "Alpha2": 2, "Layer": 1},
            {"Plugin": "Glasses Anti Glare", "Glasses Glare Removal": 0.7, "LayoutMode": "patch", "Layer": 1},
            {"Plugin": "Face Lifting", "face_lifting_version": 3, "User Params": {"Face Lifting": 0.5}, "Layer": 0},
            {"Plugin": "Color Correction", "Layer": 0, "User Params": {
                "AI": {"Color Correction Mode": "Exposure & WB"}, "Basic": {"Enable Basic": true}}}]});
        assert_eq!(check_payload(&good, false), Findings::default());

        let found = errors(json!({"mode": "professional", "tasks": [
            {"Plugin": "Heal", "Layer": 1},
            {"Plugin": "Face Detection"},
            {"Plugin": "Glasses Anti Glare", "Glasses Glare Removal": 1.5, "LayoutMode": "tiles"},
            {"Plugin": "Face Lifting", "face_lifting_version": 9, "Face Liftin": 0.5},
            {"Plugin": "Color Correction", "Layer": 1, "User Params": {
                "AI": {"Color Correction Mode": "Everything"}, "Basic": {"Enable Basic": "yes"}}}]}));
        let text = |key: &str| found.iter().find(|(k, _)| k == key).map(|(_, m)| m.clone()).unwrap_or_default();
        assert!(text("tasks[1].Plugin").contains("must be the first task"), "{found:?}");
        assert!(text("tasks[2].Glasses Glare Removal").contains("0 to 1"), "{found:?}");
        assert!(text("tasks[2].LayoutMode").contains("\"patch\""), "{found:?}");
        assert!(text("tasks[3].face_lifting_version").contains("1 to 3"), "{found:?}");
        assert!(text("tasks[3].Face Liftin").contains("did you mean \"Face Lifting\"?"), "{found:?}");
        assert!(text("tasks[4].Layer").contains("only with Layer = 0"), "{found:?}");
        assert!(text("tasks[4].User Params.AI.Color Correction Mode").contains("Exposure only"), "{found:?}");
        assert!(text("tasks[4].User Params.Basic.Enable Basic").contains("true or false"), "{found:?}");

        let flow = check_payload(
            &json!({"mode": "professional", "tasks": [{"Plugin": "Face Lifting", "Face Lifting": 0.4, "Layer": 1}]}),
            false,
        );
        assert!(flow.errors.is_empty(), "{flow:?}");
        assert!(
            flow.warnings.iter().any(|(k, m)| k == "tasks[0].Layer" && m.contains("Layer = 0 on every task")),
            "{flow:?}"
        );
    }

    #[test]
    fn suggestions_are_only_for_near_misses() {
        assert_eq!(did_you_mean("Dodge burn", PLUGINS.iter().map(|p| p.name)), Some("Dodge Burn"));
        assert_eq!(did_you_mean("Portrait Volume", PLUGINS.iter().map(|p| p.name)), Some("Portrait Volumes"));
        assert_eq!(did_you_mean("Skin Smoothing", PLUGINS.iter().map(|p| p.name)), None);
    }
}
