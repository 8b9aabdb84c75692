//! The standard benchmark shapes (DESIGN §5) and a seeded generator of realistic batches for them,
//! shared by the criterion benches, the `bench` example/CLI and the side-by-side comparison script.

/// One benchmark shape: `B` sequences over `V` classes, input and target lengths per sequence.
#[derive(Clone, Debug)]
pub struct Shape {
    /// Name used in reports (`tiny`, `chars`, …).
    pub name: &'static str,
    /// Classes `V`, blank 0 included.
    pub classes: usize,
    /// Input lengths `T_b`.
    pub input_lengths: Vec<usize>,
    /// Target lengths `L_b`.
    pub target_lengths: Vec<usize>,
}

impl Shape {
    /// `max_b T_b`.
    pub fn max_time(&self) -> usize {
        self.input_lengths.iter().copied().max().unwrap_or(0)
    }
    /// `B`.
    pub fn batch(&self) -> usize {
        self.input_lengths.len()
    }
    /// Lattice cells `sum_b T_b (2 L_b + 1)`: the unit of the cells-per-second rate.
    pub fn cells(&self) -> usize {
        self.input_lengths.iter().zip(&self.target_lengths).map(|(t, l)| t * (2 * l + 1)).sum()
    }

    fn uniform(name: &'static str, b: usize, t: usize, l: usize, v: usize) -> Shape {
        Shape { name, classes: v, input_lengths: vec![t; b], target_lengths: vec![l; b] }
    }

    /// Time-major `(T, B, V)` logits (standard normal, seeded), and concatenated targets with labels
    /// uniform over `1..V` (blank 0). Same seed, same batch.
    pub fn generate(&self, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut rng = SplitMix(seed);
        let n = self.max_time() * self.batch() * self.classes;
        let logits = (0..n).map(|_| rng.normal() as f32).collect();
        let labels = self
            .target_lengths
            .iter()
            .flat_map(|&l| {
                (0..l).map(|_| 1 + (rng.next() % (self.classes as u64 - 1)) as u32).collect::<Vec<_>>()
            })
            .collect();
        (logits, labels)
    }
}

/// The six standard shapes: tiny, chars, chars_long, bpe, bpe_large, ragged.
pub fn standard_shapes() -> Vec<Shape> {
    let mut rng = SplitMix(0x5eed);
    let (mut ts, mut ls) = (Vec::new(), Vec::new());
    for _ in 0..32 {
        ts.push(200 + (rng.next() % 201) as usize);
        ls.push(40 + (rng.next() % 41) as usize);
    }
    vec![
        Shape::uniform("tiny", 256, 50, 10, 29),
        Shape::uniform("chars", 32, 150, 40, 29),
        Shape::uniform("chars_long", 16, 1000, 200, 29),
        Shape::uniform("bpe", 16, 250, 60, 1024),
        Shape::uniform("bpe_large", 8, 500, 100, 5000),
        Shape { name: "ragged", classes: 29, input_lengths: ts, target_lengths: ls },
    ]
}

/// SplitMix64, for reproducible batches without a dependency.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn normal(&mut self) -> f64 {
        let u1 = ((self.next() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        (-2.0 * u1.ln()).sqrt() * (2.0 * core::f64::consts::PI * u2).cos()
    }
}
