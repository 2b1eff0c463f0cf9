//! The layer stack applied to the photo, row by row: each layer is decoded on its own thread
//! and handed over in batches of rows, and each row of the photo takes every layer in stacking
//! order before it is rounded once. Memory is the photo plus a few batches per layer, whatever
//! the number of layers.

use std::sync::mpsc;

use super::blend::{BlendMode, composite_row};
use super::decode::LayerRows;
use super::image::Image;

/// Rows handed over at a time.
const BATCH_ROWS: usize = 32;
/// Batches a layer's decoder may run ahead.
const AHEAD: usize = 2;

/// One layer ready to apply: its rows, blend mode and opacity (0..=1).
pub struct Layer {
    pub rows: LayerRows,
    pub mode: BlendMode,
    pub opacity: f32,
}

/// Applies `layers` (lowest first) to `image` in place. Every layer must have the image's size.
pub fn composite(image: &mut Image, layers: Vec<Layer>) -> Result<(), String> {
    let (width, height) = (image.width as usize, image.height as usize);
    for layer in &layers {
        if layer.rows.size() != (image.width, image.height) {
            return Err(format!(
                "a layer is {}×{} but the photo is {}×{}",
                layer.rows.size().0,
                layer.rows.size().1,
                image.width,
                image.height
            ));
        }
    }
    std::thread::scope(|scope| {
        let mut feeds = Vec::new();
        for mut layer in layers {
            let (tx, rx) = mpsc::sync_channel::<Result<Vec<f32>, String>>(AHEAD);
            feeds.push((rx, layer.mode, layer.opacity));
            scope.spawn(move || {
                for first in (0..height).step_by(BATCH_ROWS) {
                    let rows = BATCH_ROWS.min(height - first);
                    let mut batch = vec![0.0f32; rows * width * 4];
                    let read = batch.chunks_exact_mut(width * 4).try_for_each(|row| layer.rows.next_row(row));
                    let failed = read.is_err();
                    if tx.send(read.map(|()| batch)).is_err() || failed {
                        return;
                    }
                }
            });
        }
        let mut row = vec![0.0f32; width * 3];
        for first in (0..height).step_by(BATCH_ROWS) {
            let rows = BATCH_ROWS.min(height - first);
            let mut batches = Vec::with_capacity(feeds.len());
            for (rx, mode, opacity) in &feeds {
                let batch = rx.recv().map_err(|_| "a layer's reader stopped".to_string())??;
                batches.push((batch, *mode, *opacity));
            }
            for r in 0..rows {
                image.read_row(first + r, &mut row);
                for (batch, mode, opacity) in &batches {
                    composite_row(*mode, &mut row, &batch[r * width * 4..(r + 1) * width * 4], *opacity);
                }
                image.write_row(first + r, &row);
            }
        }
        Ok(())
    })
}
