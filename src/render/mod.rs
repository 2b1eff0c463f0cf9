//! Finished photos from the server's layers (issue: local compositing). So far its pure core:
//! [`blend`], the blend modes and the compositing of a layer onto the photo, tested alone
//! against the formulas, and [`layers`], the server's layer file names read into a stack. Decoding, metadata, file formats and the render step of a job are to
//! sit around it (see docs/design.md: compositing is pure; formats sit at its edges).

pub mod blend;
pub mod layers;
