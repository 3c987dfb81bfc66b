//! The classic batch isolation forest (Liu, Ting and Zhou, 2008): trained once on a sample,
//! never updated. Used as the baseline in the quality benchmark — it is what a detector trained
//! once on history, as the original prototype was, can do.

use super::forest::Rng;

enum Node {
    Leaf {
        size: usize,
    },
    Split {
        dim: usize,
        value: f64,
        left: Box<Node>,
        right: Box<Node>,
    },
}

/// Average path length of an unsuccessful search in a binary search tree of `n` points.
pub fn c(n: f64) -> f64 {
    if n <= 1.0 {
        0.0
    } else if n <= 2.0 {
        1.0
    } else {
        2.0 * ((n - 1.0).ln() + 0.577_215_664_901_532_9) - 2.0 * (n - 1.0) / n
    }
}

pub struct BatchForest {
    trees: Vec<Node>,
    sample: usize,
}

fn build(points: &mut [&[f64]], depth: usize, limit: usize, rng: &mut Rng) -> Node {
    if points.len() <= 1 || depth >= limit {
        return Node::Leaf { size: points.len() };
    }
    let dims = points[0].len();
    // Pick a dimension with some spread (give up after a few tries, like the reference).
    for _ in 0..dims.max(1) * 2 {
        let dim = rng.below(dims);
        let (lo, hi) = points
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p[dim]), hi.max(p[dim]))
            });
        if hi > lo {
            let value = rng.uniform(lo, hi);
            let mut i = 0;
            for j in 0..points.len() {
                if points[j][dim] < value {
                    points.swap(i, j);
                    i += 1;
                }
            }
            let (l, r) = points.split_at_mut(i);
            return Node::Split {
                dim,
                value,
                left: Box::new(build(l, depth + 1, limit, rng)),
                right: Box::new(build(r, depth + 1, limit, rng)),
            };
        }
    }
    Node::Leaf { size: points.len() }
}

fn path(node: &Node, x: &[f64], depth: f64) -> f64 {
    match node {
        Node::Leaf { size } => depth + c(*size as f64),
        Node::Split {
            dim,
            value,
            left,
            right,
        } => {
            if x[*dim] < *value {
                path(left, x, depth + 1.0)
            } else {
                path(right, x, depth + 1.0)
            }
        }
    }
}

impl BatchForest {
    /// `trees` trees on samples of `sample` points (100 and 256 in the original paper).
    pub fn fit(data: &[Vec<f64>], trees: usize, sample: usize, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let sample = sample.min(data.len()).max(1);
        let limit = (sample as f64).log2().ceil() as usize;
        let trees = (0..trees)
            .map(|_| {
                let mut pts: Vec<&[f64]> = (0..sample)
                    .map(|_| data[rng.below(data.len())].as_slice())
                    .collect();
                if data.is_empty() {
                    return Node::Leaf { size: 0 };
                }
                build(&mut pts, 0, limit, &mut rng)
            })
            .collect();
        Self { trees, sample }
    }

    /// Score in [0, 1]; above 0.5 the reference calls anomalous.
    pub fn score(&self, x: &[f64]) -> f64 {
        if self.trees.is_empty() {
            return 0.5;
        }
        let mean =
            self.trees.iter().map(|t| path(t, x, 0.0)).sum::<f64>() / self.trees.len() as f64;
        2f64.powf(-mean / c(self.sample as f64).max(f64::EPSILON))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn separates_an_outlier() {
        let mut rng = Rng::new(3);
        let data: Vec<Vec<f64>> = (0..1000)
            .map(|_| vec![rng.uniform(0.0, 1.0), rng.uniform(0.0, 1.0)])
            .collect();
        let f = BatchForest::fit(&data, 100, 256, 1);
        assert!(f.score(&[5.0, 5.0]) > 0.6);
        assert!(f.score(&[0.5, 0.5]) < 0.5);
        assert!((c(256.0) - 10.24).abs() < 0.01);
    }
}
