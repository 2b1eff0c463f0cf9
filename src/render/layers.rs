//! The server's layer files: `index=<n>&blendmode=<mode>&name=<plugin>.png` (see
//! docs/plugins.md), read into their stacking order, blend mode and plugin. Pure: names in,
//! layers out. A name that does not follow the pattern, an unknown blend mode or two layers
//! with one index is a reason not to composite (the layers are still delivered as they are).

use super::blend::BlendMode;

/// One layer as its file name describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerName {
    /// Stacking order: 0 lies right on the photo.
    pub index: u32,
    pub mode: BlendMode,
    /// The plugin that made it, e.g. "Portrait Volumes".
    pub plugin: String,
    /// The file name as the server gave it.
    pub file: String,
}

/// Why a set of layer files cannot be composited.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayerNameError {
    #[error("`{0}` is not named like a layer (index=N&blendmode=MODE&name=PLUGIN.png)")]
    NotALayer(String),
    #[error("`{file}` has the blend mode `{mode}`, which retouchd does not know")]
    UnknownMode { file: String, mode: String },
    #[error("`{first}` and `{second}` both have index {index}")]
    SameIndex { index: u32, first: String, second: String },
}

impl LayerName {
    /// Reads one file name.
    pub fn parse(file: &str) -> Result<LayerName, LayerNameError> {
        let not_a_layer = || LayerNameError::NotALayer(file.to_string());
        let stem = file.strip_suffix(".png").or_else(|| file.strip_suffix(".PNG")).ok_or_else(not_a_layer)?;
        let (mut index, mut mode) = (None, None);
        // The plugin's name comes last and may itself hold '&' or '='.
        let (head, plugin) = stem.split_once("&name=").ok_or_else(not_a_layer)?;
        for pair in head.split('&') {
            match pair.split_once('=') {
                Some(("index", n)) => index = n.parse::<u32>().ok(),
                Some(("blendmode", m)) => mode = Some(m),
                _ => return Err(not_a_layer()),
            }
        }
        let (Some(index), Some(mode)) = (index, mode) else { return Err(not_a_layer()) };
        let mode = BlendMode::parse(mode)
            .ok_or_else(|| LayerNameError::UnknownMode { file: file.to_string(), mode: mode.to_string() })?;
        Ok(LayerName { index, mode, plugin: plugin.to_string(), file: file.to_string() })
    }
}

/// The layers among a result's file names (other files, such as `result.json`, are passed
/// over), in stacking order.
pub fn stack<'a>(files: impl IntoIterator<Item = &'a str>) -> Result<Vec<LayerName>, LayerNameError> {
    let mut layers = Vec::new();
    for file in files {
        if file.starts_with("index=") {
            layers.push(LayerName::parse(file)?);
        }
    }
    layers.sort_by_key(|l| l.index);
    if let Some(pair) = layers.windows(2).find(|w| w[0].index == w[1].index) {
        return Err(LayerNameError::SameIndex {
            index: pair[0].index,
            first: pair[0].file.clone(),
            second: pair[1].file.clone(),
        });
    }
    Ok(layers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_servers_names_give_order_mode_and_plugin() {
        let files = [
            "index=1&blendmode=softLight&name=Portrait Volumes.png",
            "result.json",
            "index=0&blendmode=normal&name=Heal.png",
            "index=2&blendmode=LINEARLIGHT&name=A & B=C.png",
        ];
        let layers = stack(files).unwrap();
        let got: Vec<(u32, BlendMode, &str)> = layers.iter().map(|l| (l.index, l.mode, l.plugin.as_str())).collect();
        assert_eq!(
            got,
            [
                (0, BlendMode::Normal, "Heal"),
                (1, BlendMode::SoftLight, "Portrait Volumes"),
                (2, BlendMode::LinearLight, "A & B=C")
            ]
        );
    }

    #[test]
    fn odd_names_unknown_modes_and_clashing_indexes_are_reasons() {
        assert!(matches!(LayerName::parse("index=0&name=Heal.png"), Err(LayerNameError::NotALayer(_))));
        assert!(matches!(
            LayerName::parse("index=x&blendmode=normal&name=Heal.png"),
            Err(LayerNameError::NotALayer(_))
        ));
        assert!(matches!(
            LayerName::parse("index=0&blendmode=normal&name=Heal.jpg"),
            Err(LayerNameError::NotALayer(_))
        ));
        let unknown = LayerName::parse("index=0&blendmode=dissolve&name=Heal.png").unwrap_err();
        assert_eq!(
            unknown.to_string(),
            "`index=0&blendmode=dissolve&name=Heal.png` has the blend mode `dissolve`, which retouchd does not know"
        );
        let clash = stack(["index=0&blendmode=normal&name=A.png", "index=0&blendmode=normal&name=B.png"]);
        assert!(matches!(clash, Err(LayerNameError::SameIndex { index: 0, .. })));
    }
}
