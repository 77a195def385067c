//! The network of a run drawn for its page: one box per layer, from the input to the logits,
//! with the shape each puts out, as inline SVG (no chart library: boxes and text).

use std::fmt::Write as _;

use super::html::esc;
use crate::config::{ExperimentConfig, ModelKind};
use crate::data::IMAGE_SIDE;

/// One box: what the layer is, and the shape it puts out.
struct Layer {
    what: String,
    shape: String,
    /// The box's colour: input, convolution, pooling, dense or output.
    fill: &'static str,
}

const BOX_W: usize = 150;
const BOX_H: usize = 56;
const GAP: usize = 26;
const PER_ROW: usize = 6;

/// The layers of `config`'s network, in order.
fn layers(config: &ExperimentConfig) -> Vec<Layer> {
    let norm = if config.batchnorm { " → bn" } else { "" };
    let act = crate::config::enum_name(&config.activation);
    let mut out = Vec::new();
    match config.model {
        ModelKind::Mlp => out.push(Layer {
            what: "input".into(),
            shape: "784".into(),
            fill: "#eeeeee",
        }),
        ModelKind::Cnn => {
            out.push(Layer {
                what: "input".into(),
                shape: format!("{IMAGE_SIDE}×{IMAGE_SIDE}×1"),
                fill: "#eeeeee",
            });
            let mut side = IMAGE_SIDE;
            for c in config.conv_channels() {
                out.push(Layer {
                    what: format!("conv 3×3{norm} → {act}"),
                    shape: format!("{side}×{side}×{c}"),
                    fill: "#d6e6f5",
                });
                side = side.div_ceil(2);
                out.push(Layer {
                    what: "max-pool 2×2".into(),
                    shape: format!("{side}×{side}×{c}"),
                    fill: "#e8f0e0",
                });
            }
            out.push(Layer {
                what: "flatten".into(),
                shape: config.conv_output_size().to_string(),
                fill: "#eeeeee",
            });
        }
    }
    for &h in &config.hidden {
        out.push(Layer {
            what: format!("dense{norm} → {act}"),
            shape: h.to_string(),
            fill: "#fbe3c8",
        });
        if config.dropout > 0.0 {
            out.push(Layer {
                what: format!("dropout {}", config.dropout),
                shape: h.to_string(),
                fill: "#f3ecd9",
            });
        }
    }
    out.push(Layer {
        what: "dense (logits)".into(),
        shape: "10".into(),
        fill: "#f6d3d3",
    });
    out
}

/// The network of `config` as an SVG element, rows of boxes joined by arrows.
pub fn svg(config: &ExperimentConfig) -> String {
    let layers = layers(config);
    let rows = layers.len().div_ceil(PER_ROW);
    let width = PER_ROW * (BOX_W + GAP);
    let height = rows * (BOX_H + GAP) + 4;
    let mut s = format!(
        "<svg viewBox=\"0 0 {width} {height}\" role=\"img\" aria-label=\"the network, layer by \
         layer\" style=\"max-width:{width}px\">"
    );
    for (i, layer) in layers.iter().enumerate() {
        let (row, col) = (i / PER_ROW, i % PER_ROW);
        let (x, y) = (col * (BOX_W + GAP) + 2, row * (BOX_H + GAP) + 2);
        let _ = write!(
            s,
            "<rect x=\"{x}\" y=\"{y}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"6\" \
             fill=\"{}\" stroke=\"#777\"/><text x=\"{}\" y=\"{}\" font-size=\"13\" \
             text-anchor=\"middle\">{}</text><text x=\"{}\" y=\"{}\" font-size=\"15\" \
             font-weight=\"bold\" text-anchor=\"middle\">{}</text>",
            layer.fill,
            x + BOX_W / 2,
            y + 22,
            esc(&layer.what),
            x + BOX_W / 2,
            y + 44,
            esc(&layer.shape)
        );
        if i + 1 < layers.len() {
            // To the next box: right along the row, or down to the next row's start; the head
            // is drawn (no SVG marker: the page references nothing, not even within itself).
            let (line, head) = if col + 1 < PER_ROW {
                let (x1, ym, end) = (x + BOX_W, y + BOX_H / 2, x + BOX_W + GAP - 4);
                (
                    format!("M{x1} {ym} H{end}"),
                    format!(
                        "M{} {} L{end} {ym} L{} {} z",
                        end - 7,
                        ym - 4,
                        end - 7,
                        ym + 4
                    ),
                )
            } else {
                let (xm, y1) = (x + BOX_W / 2, y + BOX_H);
                let (xe, end) = (2 + BOX_W / 2, y1 + GAP - 4);
                (
                    format!("M{xm} {y1} V{} H{xe} V{end}", y1 + GAP / 2),
                    format!(
                        "M{} {} L{xe} {end} L{} {} z",
                        xe - 4,
                        end - 7,
                        xe + 4,
                        end - 7
                    ),
                )
            };
            let _ = write!(
                s,
                "<path d=\"{line}\" fill=\"none\" stroke=\"#555\" stroke-width=\"1.5\"/>\
                 <path class=\"arrow\" d=\"{head}\" fill=\"#555\"/>"
            );
        }
    }
    s.push_str("</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lab11_cnn_is_drawn_layer_by_layer_with_its_shapes() {
        let config = ExperimentConfig {
            model: ModelKind::Cnn,
            hidden: vec![256],
            dropout: 0.4,
            ..Default::default()
        };
        let svg = svg(&config);
        for shape in [
            "28×28×1",
            "28×28×32",
            "14×14×32",
            "7×7×128",
            "4×4×128",
            "2048",
            "256",
        ] {
            assert!(svg.contains(&format!(">{shape}<")), "{shape}: {svg}");
        }
        assert!(svg.contains("dropout 0.4"));
        // input, 3 × (conv, pool), flatten, dense, dropout, logits: 11 boxes, 10 arrows.
        assert_eq!(svg.matches("<rect").count(), 11);
        assert_eq!(svg.matches("class=\"arrow\"").count(), 10);
        let mlp = super::svg(&ExperimentConfig::default());
        assert_eq!(mlp.matches("<rect").count(), 4);
        assert!(mlp.contains(">784<"));
    }
}
