//! What a plugin's layer is for. Not every layer is pixels to blend (the vendor's API document):
//! Skin Mask is a helper selection for later work, never composited (kept hidden in the PSD);
//! Face Lifting returns a flow layer, a deformation in an encoding that is not published, never
//! blended as pixels; every other layer is pixels, blended by the mode its file name gives.

use super::Failure;

/// The part a layer plays in the finished photo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Pixels blended onto the photo by the layer's mode.
    Pixels,
    /// A mask for the retoucher (Skin Mask): left out of the finished photo, hidden in the PSD.
    HelperMask,
    /// A deformation (Face Lifting's flow layer): see [`apply_flow`].
    Flow,
}

/// The role of the layer `plugin` made (names compared without regard to case).
pub fn role_of(plugin: &str) -> Role {
    if crate::vocab::same_plugin(plugin, "Skin Mask") {
        Role::HelperMask
    } else if crate::vocab::same_plugin(plugin, "Face Lifting") {
        Role::Flow
    } else {
        Role::Pixels
    }
}

/// Why a result with a flow layer gets no finished photo, and how to get one.
pub const FLOW_NOT_APPLIED: &str = "the result holds a Face Lifting flow layer (a deformation, not pixels to blend) \
    whose encoding the vendor has not published, so retouchd cannot apply it locally yet; the layers are delivered \
    as they are. For a finished photo with Face Lifting applied, let the server flatten it: set `Layer = 0` on every \
    task of the watch's payload (one flat image comes back, Face Lifting included)";

/// Applies a flow layer to the photo: the one place where that is done. Its encoding is not
/// published, so today this always says why not (the caller delivers the layers with the
/// reason); applying it later is a change here alone.
pub fn apply_flow(plugin: &str) -> Result<(), Failure> {
    Err(Failure::Bad(format!("{FLOW_NOT_APPLIED} (layer of {plugin})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_and_flows_are_not_pixels_and_a_flow_says_how_to_get_a_finished_photo() {
        assert_eq!(role_of("Skin Mask"), Role::HelperMask);
        assert_eq!(role_of("skin mask"), Role::HelperMask);
        assert_eq!(role_of("Face Lifting"), Role::Flow);
        for plugin in ["Heal", "Dodge Burn", "Glasses Anti Glare", "Portrait Volumes"] {
            assert_eq!(role_of(plugin), Role::Pixels, "{plugin}");
        }
        let Err(Failure::Bad(why)) = apply_flow("Face Lifting") else { panic!("a flow is never applied yet") };
        assert!(why.contains("Layer = 0") && why.contains("cannot apply it locally"), "{why}");
    }
}
