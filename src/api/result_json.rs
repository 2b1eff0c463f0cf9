//! `result.json`, what the plugins found, as the fuller API document describes it:
//! `{"jsonVersion": "1", "plugins": [{"pluginName": …, "metadata": {…}, "faces": [{…}]}]}`, each
//! face with its `confidence`, age, gender and glasses figures, normalized `landmarks`, and for
//! Glasses Anti Glare's patch layout a 2x3 `glassesAntiGlarePatchMatrix` with `patchWidth` and
//! `patchHeight`. Read tolerantly: unknown keys are kept (`other`), a field of an unexpected
//! type is left out, older shapes (a list of plugin names, top-level `faces`) are understood.
//! Only a file that is not a JSON object is an error.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The whole file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResultJson {
    pub json_version: Option<String>,
    pub plugins: Vec<PluginRun>,
    /// Faces given at the top level (older answers, and the simulator before the fuller document).
    pub faces: Vec<Face>,
    /// Every key not read above, as it came.
    pub other: Map<String, Value>,
}

/// One plugin's part.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginRun {
    pub name: String,
    pub metadata: Option<Value>,
    pub faces: Vec<Face>,
    pub other: Map<String, Value>,
}

/// One face a plugin found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Face {
    pub confidence: Option<f64>,
    pub age: Option<f64>,
    pub gender_female: Option<f64>,
    pub gender_male: Option<f64>,
    pub glasses: Option<f64>,
    /// Normalized `{x, y}` points.
    pub landmarks: Vec<(f64, f64)>,
    /// Glasses Anti Glare (patch layout): photo coordinates → patch coordinates,
    /// `[a, b, c, d, e, f]` for `u = a·x + b·y + c`, `v = d·x + e·y + f`.
    pub patch_matrix: Option<[f64; 6]>,
    pub patch_size: Option<(u32, u32)>,
    pub other: Map<String, Value>,
}

/// What a job's result says that a person should see: faces found, plugins run, and whether
/// face-aware plugins ran on a photo where no face was found (the credit bought little).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Findings {
    pub faces: u32,
    pub plugins: Vec<String>,
    /// Face-aware plugins ran and found no face.
    #[serde(default)]
    pub no_face: bool,
}

impl ResultJson {
    /// Reads the file's bytes; an error says why it is not a result.json at all.
    pub fn parse(bytes: &[u8]) -> Result<ResultJson, String> {
        let value: Value = serde_json::from_slice(bytes).map_err(|e| format!("result.json is not JSON: {e}"))?;
        let Value::Object(mut map) = value else { return Err("result.json is not a JSON object".into()) };
        let json_version = match map.remove("jsonVersion") {
            Some(Value::String(v)) => Some(v),
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(other) => {
                map.insert("jsonVersion".into(), other);
                None
            }
            None => None,
        };
        let plugins = match map.remove("plugins") {
            Some(Value::Array(items)) => items.into_iter().filter_map(PluginRun::from_value).collect(),
            Some(other) => {
                map.insert("plugins".into(), other);
                Vec::new()
            }
            None => Vec::new(),
        };
        let faces = take_faces(&mut map);
        Ok(ResultJson { json_version, plugins, faces, other: map })
    }

    /// How many faces were found: Face Detection's count when it ran, else the most any plugin
    /// (or the top level) reports.
    pub fn face_count(&self) -> u32 {
        let detection = self.plugins.iter().find(|p| crate::vocab::same_plugin(&p.name, "Face Detection"));
        let count = match detection {
            Some(d) => d.faces.len(),
            None => self.plugins.iter().map(|p| p.faces.len()).chain([self.faces.len()]).max().unwrap_or(0),
        };
        u32::try_from(count).unwrap_or(u32::MAX)
    }

    /// The faces `plugin` placed patches for (with their matrices).
    pub fn faces_of(&self, plugin: &str) -> Vec<&Face> {
        self.plugins.iter().filter(|p| crate::vocab::same_plugin(&p.name, plugin)).flat_map(|p| &p.faces).collect()
    }

    /// What to show of it, given which plugins are face-aware.
    pub fn findings(&self, face_aware: impl Fn(&str) -> bool) -> Findings {
        let faces = self.face_count();
        let plugins: Vec<String> = self.plugins.iter().map(|p| p.name.clone()).collect();
        let no_face = faces == 0 && plugins.iter().any(|p| face_aware(p));
        Findings { faces, plugins, no_face }
    }
}

impl PluginRun {
    fn from_value(value: Value) -> Option<PluginRun> {
        match value {
            Value::String(name) => Some(PluginRun { name, ..PluginRun::default() }),
            Value::Object(mut map) => {
                let name = match map.remove("pluginName").or_else(|| map.remove("name")) {
                    Some(Value::String(name)) => name,
                    _ => return None,
                };
                let metadata = map.remove("metadata");
                let faces = take_faces(&mut map);
                Some(PluginRun { name, metadata, faces, other: map })
            }
            _ => None,
        }
    }
}

/// Takes `faces` out of `map` (left in place when it is not a list).
fn take_faces(map: &mut Map<String, Value>) -> Vec<Face> {
    match map.remove("faces") {
        Some(Value::Array(items)) => items.into_iter().filter_map(Face::from_value).collect(),
        Some(other) => {
            map.insert("faces".into(), other);
            Vec::new()
        }
        None => Vec::new(),
    }
}

impl Face {
    fn from_value(value: Value) -> Option<Face> {
        let Value::Object(mut map) = value else { return None };
        let mut number = |key: &str| match map.remove(key) {
            Some(Value::Number(n)) => n.as_f64(),
            Some(other) => {
                map.insert(key.into(), other);
                None
            }
            None => None,
        };
        let confidence = number("confidence");
        let age = number("faceAge");
        let gender_female = number("faceGenderFemale");
        let gender_male = number("faceGenderMale");
        let glasses = number("faceGlasses");
        let width = number("patchWidth");
        let height = number("patchHeight");
        let patch_size = match (width, height) {
            (Some(w), Some(h)) if w >= 1.0 && h >= 1.0 && w <= 65_535.0 && h <= 65_535.0 => Some((w as u32, h as u32)),
            _ => None,
        };
        let landmarks = match map.remove("landmarks") {
            Some(Value::Array(points)) => {
                points.iter().filter_map(|p| Some((p.get("x")?.as_f64()?, p.get("y")?.as_f64()?))).collect()
            }
            Some(other) => {
                map.insert("landmarks".into(), other);
                Vec::new()
            }
            None => Vec::new(),
        };
        let patch_matrix = match map.remove("glassesAntiGlarePatchMatrix") {
            Some(m) => match matrix(&m) {
                Some(found) => Some(found),
                None => {
                    map.insert("glassesAntiGlarePatchMatrix".into(), m);
                    None
                }
            },
            None => None,
        };
        Some(Face {
            confidence,
            age,
            gender_female,
            gender_male,
            glasses,
            landmarks,
            patch_matrix,
            patch_size,
            other: map,
        })
    }
}

/// A 2x3 matrix given as `[[a, b, c], [d, e, f]]` or flat `[a, b, c, d, e, f]`, all finite.
fn matrix(value: &Value) -> Option<[f64; 6]> {
    let numbers: Vec<f64> = match value.as_array()? {
        rows if rows.len() == 2 && rows.iter().all(Value::is_array) => {
            rows.iter().flat_map(|r| r.as_array().into_iter().flatten()).map(Value::as_f64).collect::<Option<_>>()?
        }
        flat => flat.iter().map(Value::as_f64).collect::<Option<_>>()?,
    };
    let m: [f64; 6] = numbers.try_into().ok()?;
    m.iter().all(|x| x.is_finite()).then_some(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_documents_shape_is_read_and_unknown_keys_are_kept() {
        let text = json!({
            "jsonVersion": "1",
            "newTopLevel": {"x": 1},
            "plugins": [
                {"pluginName": "Face Detection", "metadata": {"model": "v7"}, "faces": [
                    {"confidence": 0.98, "faceAge": 31, "faceGenderFemale": 0.9, "faceGenderMale": 0.1,
                     "faceGlasses": 0.8, "landmarks": [{"x": 0.4, "y": 0.3}, {"x": "bad"}], "newFaceKey": true},
                    {"confidence": 0.7}]},
                {"pluginName": "Glasses Anti Glare", "faces": [
                    {"glassesAntiGlarePatchMatrix": [[0.5, 0, -10], [0, 0.5, -20]], "patchWidth": 64, "patchHeight": 32}]},
                {"pluginName": "Heal", "unknownPluginKey": [1, 2]},
                "Dodge Burn",
                42
            ]
        });
        let r = ResultJson::parse(text.to_string().as_bytes()).unwrap();
        assert_eq!(r.json_version.as_deref(), Some("1"));
        assert_eq!(r.other.get("newTopLevel"), Some(&json!({"x": 1})));
        assert_eq!(r.face_count(), 2, "Face Detection's count");
        let first = &r.plugins[0].faces[0];
        assert_eq!((first.confidence, first.age, first.glasses), (Some(0.98), Some(31.0), Some(0.8)));
        assert_eq!(first.landmarks, vec![(0.4, 0.3)], "a bad point is left out, not a failure");
        assert_eq!(first.other.get("newFaceKey"), Some(&json!(true)));
        let glasses = r.faces_of("Glasses Anti Glare");
        assert_eq!(glasses[0].patch_matrix, Some([0.5, 0.0, -10.0, 0.0, 0.5, -20.0]));
        assert_eq!(glasses[0].patch_size, Some((64, 32)));
        assert_eq!(r.plugins[2].other.get("unknownPluginKey"), Some(&json!([1, 2])));
        assert_eq!(
            r.plugins.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(),
            ["Face Detection", "Glasses Anti Glare", "Heal", "Dodge Burn"]
        );
        let findings = r.findings(|p| p == "Glasses Anti Glare");
        assert_eq!((findings.faces, findings.no_face), (2, false));
    }

    #[test]
    fn no_face_for_face_aware_plugins_is_flagged_and_odd_files_never_fail_unless_not_an_object() {
        let r = ResultJson::parse(br#"{"plugins": [{"pluginName": "Eye Vessels", "faces": []}], "faces": 3}"#).unwrap();
        assert!(r.findings(|p| p == "Eye Vessels").no_face);
        assert_eq!(r.other.get("faces"), Some(&json!(3)), "an odd `faces` is kept as it came");
        assert!(!r.findings(|_| false).no_face, "no face-aware plugin, no flag");
        let older = ResultJson::parse(br#"{"plugins": ["Heal"], "faces": [{"x": 0.3}]}"#).unwrap();
        assert_eq!(older.face_count(), 1);
        assert!(ResultJson::parse(b"[1]").is_err());
        assert!(ResultJson::parse(b"not json").is_err());
        let bad_matrix = ResultJson::parse(br#"{"plugins": [{"pluginName": "Glasses Anti Glare", "faces": [{"glassesAntiGlarePatchMatrix": [1, 2]}]}]}"#).unwrap();
        assert_eq!(bad_matrix.faces_of("Glasses Anti Glare")[0].patch_matrix, None);
    }
}
