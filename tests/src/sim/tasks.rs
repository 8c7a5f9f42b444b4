//! Tasks the simulated validators hand out: a mix of text prompts and image prompts, the
//! latter small PNGs rendered here and sent as base64, as v45 sends image tasks.

use base64::Engine as _;
use rand::{rngs::StdRng, Rng as _, SeedableRng as _};
use splatfleet_common::protocol::sn17::ProtocolTask;

const TEXT_PROMPTS: &[&str] = &[
    "a red wooden chair with a curved back",
    "a small blue ceramic teapot",
    "a rusty iron anchor",
    "a green cactus in a terracotta pot",
    "a vintage brass pocket watch",
    "a yellow rubber duck",
    "a stone garden lantern",
    "a purple crystal geode",
    "a leather hiking boot",
    "a wooden treasure chest with iron bands",
    "a white porcelain vase with blue flowers",
    "a toy robot made of tin",
];

/// Image edge in pixels.
const IMAGE_SIZE: u32 = 64;

/// Deterministic task source for one validator.
#[derive(Debug)]
pub struct TaskFactory {
    rng: StdRng,
    image_fraction: f64,
    /// Tasks handed out before any generated one (bad-input tests).
    scripted: std::collections::VecDeque<ProtocolTask>,
}

impl TaskFactory {
    pub fn new(seed: u64, image_fraction: f64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            image_fraction: image_fraction.clamp(0.0, 1.0),
            scripted: std::collections::VecDeque::new(),
        }
    }

    /// Queues `tasks` to be handed out, in order, before the generated ones.
    pub fn hand_out_first(&mut self, tasks: Vec<ProtocolTask>) {
        self.scripted.extend(tasks);
    }

    pub fn next_task(&mut self) -> ProtocolTask {
        if let Some(task) = self.scripted.pop_front() {
            return task;
        }
        let id = uuid::Uuid::from_u128(self.rng.random()).to_string();
        if self.rng.random::<f64>() < self.image_fraction {
            let png = self.render_png();
            ProtocolTask::image(id, base64::engine::general_purpose::STANDARD.encode(png))
        } else {
            let prompt = TEXT_PROMPTS[self.rng.random_range(0..TEXT_PROMPTS.len())];
            ProtocolTask::text(id, prompt)
        }
    }

    /// A white square with one coloured disc: enough for an image-to-3D service to chew on.
    fn render_png(&mut self) -> Vec<u8> {
        let colour = [
            self.rng.random::<u8>(),
            self.rng.random::<u8>(),
            self.rng.random::<u8>(),
        ];
        let size = IMAGE_SIZE as f64;
        let cx = self.rng.random_range(0.3..0.7) * size;
        let cy = self.rng.random_range(0.3..0.7) * size;
        let radius = self.rng.random_range(0.15..0.3) * size;
        let mut pixels = Vec::with_capacity((IMAGE_SIZE * IMAGE_SIZE * 3) as usize);
        for y in 0..IMAGE_SIZE {
            for x in 0..IMAGE_SIZE {
                let (dx, dy) = (x as f64 + 0.5 - cx, y as f64 + 0.5 - cy);
                if dx * dx + dy * dy <= radius * radius {
                    pixels.extend_from_slice(&colour);
                } else {
                    pixels.extend_from_slice(&[255, 255, 255]);
                }
            }
        }
        encode_png(&pixels, IMAGE_SIZE, IMAGE_SIZE)
    }
}

fn encode_png(rgb: &[u8], width: u32, height: u32) -> Vec<u8> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let written = encoder
        .write_header()
        .and_then(|mut w| w.write_image_data(rgb));
    if let Err(e) = written {
        // Writing into a Vec with matching dimensions cannot fail; keep the task valid anyway.
        eprintln!("splatfleet-sim: PNG encoding failed: {e}");
    }
    out
}
