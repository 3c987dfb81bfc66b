//! An online isolation forest: a forest of multi-resolution histograms over a sliding window,
//! after Leveni, Cassales, Pfahringer, Bifet and Boracchi, "Online Isolation Forest" (ICML 2024).
//!
//! Each tree is a set of nodes that count the points of the window falling in their region and
//! keep the bounding box of what they have seen. A leaf splits once it holds `η·2^depth` points
//! (adaptive growth) and the depth limit `log₄(n/η)` allows; since points are not stored, the
//! split re-creates the leaf's points as uniform samples in its box. Points leaving the window are
//! unlearned: counts go down along their path, and a node whose count falls below its split
//! threshold collapses back into a leaf. A point's depth is the depth of the leaf it reaches plus
//! the expected depth `log₄(count/η)` of the points still in that leaf; the score is
//! `2^(−mean depth / log₄(n/η))`, in [0, 1], higher is more anomalous.
//!
//! One addition (`bounded`, off by default so the paper's protocol stays reproducible): leaves
//! hold many points and their splits lie inside the boxes seen so far, so a point far outside
//! everything seen lands in an edge leaf and looks hardly more isolated than its neighbours.
//! With `bounded`, every node on the path may isolate the point with the probability that a
//! random cut of the node's box, stretched to include the point, falls between the point and the
//! box, `gap / (range + gap)`, taken in the dimension where the point lies furthest out — and the
//! depth is the expectation over where it gets isolated. Inside every box this is the plain
//! depth; far outside it tends to the depth of the first node it leaves. (Averaging over
//! dimensions instead, as a random choice of dimension would, lets a window whose error rate is
//! thirty times its normal hide among nine ordinary features; for monitoring, one feature far out
//! of line is exactly what must stand out.)
//!
//! Points are held at single precision: a point is rounded to the nearest `f32` when it is learned
//! or scored (and a leaf's re-created points when they are made), so the window and the nodes'
//! boxes store exactly what the trees saw, in half the memory, and a point slides out of the
//! window down the same path it came in by. Seven significant digits are far finer than any
//! feature's noise.
//!
//! Everything random comes from one seeded SplitMix64 stream, so a forest is fully determined by
//! its seed and the points it learned, in order (which is also how models are saved and loaded).

/// SplitMix64: small, fast, and the same on every platform and version.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        if hi > lo {
            lo + (hi - lo) * self.unit()
        } else {
            lo
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ForestParams {
    pub trees: usize,
    /// η: points a leaf holds before it may split (times 2^depth when `adaptive`).
    pub max_leaf_samples: usize,
    /// ω: points in the sliding window; 0 never forgets.
    pub window: usize,
    pub adaptive: bool,
    /// Probability that a tree learns a given point (diversity between trees).
    pub subsample: f64,
    /// Isolate points that fall outside the boxes seen (see the module notes).
    pub bounded: bool,
}

impl Default for ForestParams {
    /// The paper's settings.
    fn default() -> Self {
        Self {
            trees: 32,
            max_leaf_samples: 32,
            window: 2048,
            adaptive: true,
            subsample: 1.0,
            bounded: false,
        }
    }
}

/// Branching factor 2: `log(n/η) / log(2·2)`.
fn random_path_length(max_leaf_samples: usize, n: f64) -> f64 {
    if n < max_leaf_samples as f64 {
        0.0
    } else {
        (n / max_leaf_samples as f64).ln() / 4f64.ln()
    }
}

#[derive(Debug, Clone, Copy)]
struct Split {
    dim: usize,
    value: f64,
    left: usize,
    right: usize,
}

/// A node in 24 bytes (a series' trees hold hundreds): a leaf when `left` is `LEAF`.
#[derive(Debug, Clone)]
struct Node {
    value: f64,
    count: u32,
    left: u32,
    right: u32,
    depth: u16,
    dim: u16,
}

const LEAF: u32 = u32::MAX;

impl Node {
    fn leaf(count: usize, depth: u32) -> Self {
        Self {
            value: 0.0,
            count: 0,
            left: LEAF,
            right: LEAF,
            depth: depth.min(u32::from(u16::MAX)) as u16,
            dim: 0,
        }
        .with_count(count)
    }

    /// Node indices and dimensions fit: a tree never holds 2³² nodes, nor a point 2¹⁶ features.
    fn inner(count: usize, depth: u32, s: Split) -> Self {
        Self {
            value: s.value,
            left: s.left as u32,
            right: s.right as u32,
            dim: s.dim as u16,
            ..Self::leaf(count, depth)
        }
    }

    fn with_count(mut self, count: usize) -> Self {
        self.set_count(count);
        self
    }

    fn count(&self) -> usize {
        self.count as usize
    }

    fn set_count(&mut self, count: usize) {
        self.count = count.min(u32::MAX as usize) as u32;
    }

    fn depth(&self) -> u32 {
        u32::from(self.depth)
    }

    fn split(&self) -> Option<Split> {
        (self.left != LEAF).then_some(Split {
            dim: usize::from(self.dim),
            value: self.value,
            left: self.left as usize,
            right: self.right as usize,
        })
    }

    /// Makes it a leaf; its split, if it had one.
    fn take_split(&mut self) -> Option<Split> {
        let s = self.split();
        self.left = LEAF;
        self.right = LEAF;
        s
    }

    fn set_children(&mut self, left: usize, right: usize) {
        self.left = left as u32;
        self.right = right as u32;
    }
}

#[derive(Debug, Clone)]
struct Tree {
    nodes: Vec<Node>,
    // The window's points and every node's box are the forest's memory (512 points and about
    // 250 nodes per series at the defaults): both are kept flat, a point or a box a slice of
    // one buffer instead of a heap allocation each (with its header and the allocator's
    // overhead), which takes a third off a series' model.
    /// Node `i`'s bounding box: `dim` lows then `dim` highs at `2·dim·i` (single precision,
    /// exact: the bounds of points rounded to `f32`).
    boxes: Vec<f32>,
    dim: usize,
    free: Vec<usize>,
    root: Option<usize>,
    data_size: usize,
    depth_limit: f64,
}

/// Which tree-local points (indices into the batch) go left and right of a split.
fn partition(points: &[&[f64]], idx: &[usize], dim: usize, value: f64) -> (Vec<usize>, Vec<usize>) {
    idx.iter().partition(|&&i| points[i][dim] < value)
}

impl Tree {
    fn new(dim: usize) -> Self {
        Self {
            nodes: Vec::new(),
            boxes: Vec::new(),
            dim,
            free: Vec::new(),
            root: None,
            data_size: 0,
            depth_limit: 0.0,
        }
    }

    fn alloc(&mut self, node: Node, lo: &[f32], hi: &[f32]) -> usize {
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i] = node;
                i
            }
            None => {
                // Exactly as much room as the nodes take: a tree holds a few nodes and grows
                // rarely once warm, so doubling's spare room (a quarter of the forest's memory
                // on average) would cost more than the occasional copy.
                self.nodes.reserve_exact(1);
                self.nodes.push(node);
                self.boxes.reserve_exact(2 * self.dim);
                self.boxes.resize(self.nodes.len() * 2 * self.dim, 0.0);
                self.nodes.len() - 1
            }
        };
        let (l, h) = self.box_mut(i);
        for (s, v) in l.iter_mut().zip(lo) {
            *s = *v;
        }
        for (s, v) in h.iter_mut().zip(hi) {
            *s = *v;
        }
        i
    }

    fn lo(&self, i: usize) -> &[f32] {
        &self.boxes[2 * self.dim * i..][..self.dim]
    }

    fn hi(&self, i: usize) -> &[f32] {
        &self.boxes[2 * self.dim * i + self.dim..][..self.dim]
    }

    fn box_mut(&mut self, i: usize) -> (&mut [f32], &mut [f32]) {
        self.boxes[2 * self.dim * i..][..2 * self.dim].split_at_mut(self.dim)
    }

    fn threshold(p: &ForestParams, depth: u32) -> usize {
        if p.adaptive {
            p.max_leaf_samples.saturating_mul(1usize << depth.min(40))
        } else {
            p.max_leaf_samples
        }
    }

    fn bbox(points: &[&[f64]], idx: &[usize], dim: usize) -> (Vec<f32>, Vec<f32>) {
        let mut lo = vec![f32::INFINITY; dim];
        let mut hi = vec![f32::NEG_INFINITY; dim];
        for &i in idx {
            for (d, &v) in points[i].iter().enumerate().take(dim) {
                // Exact: the points are rounded to `f32` already.
                lo[d] = lo[d].min(v as f32);
                hi[d] = hi[d].max(v as f32);
            }
        }
        (lo, hi)
    }

    fn build(
        &mut self,
        p: &ForestParams,
        rng: &mut Rng,
        points: &[&[f64]],
        idx: &[usize],
        depth: u32,
        dim: usize,
    ) -> usize {
        let (lo, hi) = Self::bbox(points, idx, dim);
        let n = idx.len();
        if n < Self::threshold(p, depth) || depth as f64 >= self.depth_limit {
            let leaf = Node::leaf(n, depth);
            return self.alloc(leaf, &lo, &hi);
        }
        let d = rng.below(dim);
        let value = rng.uniform(f64::from(lo[d]), f64::from(hi[d]));
        let (l, r) = partition(points, idx, d, value);
        let left = self.build(p, rng, points, &l, depth + 1, dim);
        let right = self.build(p, rng, points, &r, depth + 1, dim);
        let inner = Node::inner(
            n,
            depth,
            Split {
                dim: d,
                value,
                left,
                right,
            },
        );
        self.alloc(inner, &lo, &hi)
    }

    fn learn(&mut self, p: &ForestParams, rng: &mut Rng, points: &[&[f64]], dim: usize) {
        let idx: Vec<usize> = (0..points.len())
            .filter(|_| p.subsample >= 1.0 || rng.unit() < p.subsample)
            .collect();
        if idx.is_empty() {
            return;
        }
        self.data_size += idx.len();
        self.depth_limit = random_path_length(p.max_leaf_samples, self.data_size as f64);
        self.root = Some(match self.root {
            None => self.build(p, rng, points, &idx, 0, dim),
            Some(root) => self.learn_at(p, rng, root, points, &idx, dim),
        });
    }

    /// Adds points under `node`; returns the node's (possibly new) index.
    fn learn_at(
        &mut self,
        p: &ForestParams,
        rng: &mut Rng,
        node: usize,
        points: &[&[f64]],
        idx: &[usize],
        dim: usize,
    ) -> usize {
        let count = self.nodes[node].count() + idx.len();
        self.nodes[node].set_count(count);
        {
            let (lo, hi) = self.box_mut(node);
            for &i in idx {
                for (d, &v) in points[i].iter().enumerate().take(dim) {
                    lo[d] = lo[d].min(v as f32);
                    hi[d] = hi[d].max(v as f32);
                }
            }
        }
        match self.nodes[node].split() {
            None => {
                let nd = &self.nodes[node];
                let (count, depth) = (nd.count(), nd.depth());
                if count >= Self::threshold(p, depth) && (depth as f64) < self.depth_limit {
                    // Re-create the leaf's points uniformly in its box, and grow from them.
                    let (lo, hi) = (self.lo(node).to_vec(), self.hi(node).to_vec());
                    // Rounded like learned points (inside the box: its bounds are `f32`s).
                    let synthetic: Vec<Vec<f64>> = (0..count)
                        .map(|_| {
                            (0..dim)
                                .map(|d| single(rng.uniform(f64::from(lo[d]), f64::from(hi[d]))))
                                .collect()
                        })
                        .collect();
                    let refs: Vec<&[f64]> = synthetic.iter().map(|v| v.as_slice()).collect();
                    let all: Vec<usize> = (0..count).collect();
                    self.free.push(node);
                    self.build(p, rng, &refs, &all, depth, dim)
                } else {
                    node
                }
            }
            Some(s) => {
                // Both children are visited even without new points: a leaf may now split
                // because the depth limit grew with the tree.
                let (l, r) = partition(points, idx, s.dim, s.value);
                let left = self.learn_at(p, rng, s.left, points, &l, dim);
                let right = self.learn_at(p, rng, s.right, points, &r, dim);
                self.nodes[node].set_children(left, right);
                node
            }
        }
    }

    fn unlearn(&mut self, p: &ForestParams, rng: &mut Rng, points: &[&[f64]], dim: usize) {
        let idx: Vec<usize> = (0..points.len())
            .filter(|_| p.subsample >= 1.0 || rng.unit() < p.subsample)
            .collect();
        if idx.is_empty() {
            return;
        }
        self.data_size = self.data_size.saturating_sub(idx.len());
        self.depth_limit = random_path_length(p.max_leaf_samples, self.data_size as f64);
        if let Some(root) = self.root {
            self.unlearn_at(p, root, points, &idx, dim);
        }
    }

    fn unlearn_at(
        &mut self,
        p: &ForestParams,
        node: usize,
        points: &[&[f64]],
        idx: &[usize],
        dim: usize,
    ) {
        let nd = &mut self.nodes[node];
        nd.set_count(nd.count().saturating_sub(idx.len()));
        let Some(s) = nd.split() else {
            return;
        };
        if nd.count() < Self::threshold(p, nd.depth()) {
            self.collapse(node, dim);
            return;
        }
        let (l, r) = partition(points, idx, s.dim, s.value);
        if !l.is_empty() {
            self.unlearn_at(p, s.left, points, &l, dim);
        }
        if !r.is_empty() {
            self.unlearn_at(p, s.right, points, &r, dim);
        }
        self.union_box(node, s.left, s.right, dim);
    }

    fn union_box(&mut self, node: usize, a: usize, b: usize, dim: usize) {
        for d in 0..dim {
            let lo = self.lo(a)[d].min(self.lo(b)[d]);
            let hi = self.hi(a)[d].max(self.hi(b)[d]);
            let (l, h) = self.box_mut(node);
            l[d] = lo;
            h[d] = hi;
        }
    }

    /// Turns `node` back into a leaf whose box is the union of its leaves' boxes.
    fn collapse(&mut self, node: usize, dim: usize) {
        let Some(s) = self.nodes[node].take_split() else {
            return;
        };
        self.collapse(s.left, dim);
        self.collapse(s.right, dim);
        self.union_box(node, s.left, s.right, dim);
        self.free.push(s.left);
        self.free.push(s.right);
    }

    fn depth(&self, p: &ForestParams, x: &[f64]) -> f64 {
        if p.bounded {
            return self.bounded_depth(p, x);
        }
        let Some(mut n) = self.root else {
            return 0.0;
        };
        loop {
            let nd = &self.nodes[n];
            match nd.split() {
                Some(s) => n = if x[s.dim] < s.value { s.left } else { s.right },
                None => {
                    return nd.depth() as f64
                        + random_path_length(p.max_leaf_samples, nd.count() as f64)
                }
            }
        }
    }

    /// The expected depth when any node may isolate a point lying outside its box.
    fn bounded_depth(&self, p: &ForestParams, x: &[f64]) -> f64 {
        let Some(mut n) = self.root else {
            return 0.0;
        };
        let mut survive = 1.0;
        let mut h = 0.0;
        loop {
            let nd = &self.nodes[n];
            let d = nd.depth() as f64;
            if nd.count() == 0 {
                return h + survive * d;
            }
            let (los, his) = (self.lo(n), self.hi(n));
            let sep: f64 = x
                .iter()
                .enumerate()
                .map(|(k, &v)| {
                    let (lo, hi) = (f64::from(los[k]), f64::from(his[k]));
                    let gap = (lo - v).max(v - hi).max(0.0);
                    if gap == 0.0 {
                        0.0
                    } else {
                        gap / ((hi - lo).max(0.0) + gap)
                    }
                })
                .fold(0.0, f64::max);
            h += survive * sep * (d + 1.0);
            survive *= 1.0 - sep;
            match nd.split() {
                Some(s) => n = if x[s.dim] < s.value { s.left } else { s.right },
                None => {
                    return h + survive
                        * (d + random_path_length(p.max_leaf_samples, nd.count() as f64))
                }
            }
        }
    }

    fn live_nodes(&self) -> usize {
        self.nodes.len() - self.free.len()
    }
}

/// `v` at single precision, kept finite (what the forest holds of a coordinate).
fn single(v: f64) -> f64 {
    f64::from((v as f32).clamp(f32::MIN, f32::MAX))
}

/// The sliding window's points, oldest first, in one ring buffer of `capacity` points.
#[derive(Debug, Clone)]
struct Window {
    /// Single precision, exact: the points are rounded when learned.
    data: Vec<f32>,
    dim: usize,
    capacity: usize,
    /// The oldest point's slot, and how many points are held.
    head: usize,
    len: usize,
}

impl Window {
    fn new(dim: usize, capacity: usize) -> Self {
        Self {
            data: Vec::new(),
            dim,
            capacity,
            head: 0,
            len: 0,
        }
    }

    fn slot(&self, i: usize) -> &[f32] {
        &self.data[((self.head + i) % self.capacity.max(1)) * self.dim..][..self.dim]
    }

    /// Appends a point; the caller has made room (`pop_front`) first.
    fn push(&mut self, p: &[f64]) {
        if self.len >= self.capacity {
            return;
        }
        let at = (self.head + self.len) % self.capacity;
        if (at + 1) * self.dim > self.data.len() {
            if self.data.capacity() == 0 {
                // The window fills in its first `capacity` points and stays full: no slack.
                self.data.reserve_exact(self.capacity * self.dim);
            }
            self.data.resize((at + 1) * self.dim, 0.0);
        }
        for (s, v) in self.data[at * self.dim..][..self.dim].iter_mut().zip(p) {
            *s = *v as f32;
        }
        self.len += 1;
    }

    /// Removes the `n` oldest points and gives them back, oldest first.
    fn pop_front(&mut self, n: usize) -> Vec<Vec<f64>> {
        let n = n.min(self.len);
        let out = (0..n).map(|i| self.point(i)).collect();
        if n > 0 {
            self.head = (self.head + n) % self.capacity;
            self.len -= n;
        }
        out
    }

    fn point(&self, i: usize) -> Vec<f64> {
        self.slot(i).iter().map(|v| f64::from(*v)).collect()
    }

    fn iter(&self) -> impl Iterator<Item = Vec<f64>> + '_ {
        (0..self.len).map(|i| self.point(i))
    }
}

/// An online isolation forest over points of a fixed dimension.
#[derive(Debug, Clone)]
pub struct OnlineForest {
    params: ForestParams,
    dim: usize,
    trees: Vec<Tree>,
    window: Window,
    data_size: usize,
    rng: Rng,
}

impl OnlineForest {
    pub fn new(params: ForestParams, dim: usize, seed: u64) -> Self {
        Self {
            trees: (0..params.trees.max(1)).map(|_| Tree::new(dim)).collect(),
            window: Window::new(dim, params.window),
            params,
            dim,
            data_size: 0,
            rng: Rng::new(seed),
        }
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn params(&self) -> &ForestParams {
        &self.params
    }

    /// Points currently learned (at most the window size).
    pub fn len(&self) -> usize {
        self.data_size
    }

    pub fn is_empty(&self) -> bool {
        self.data_size == 0
    }

    /// The window's points, oldest first (what a saved model stores).
    pub fn window(&self) -> impl Iterator<Item = Vec<f64>> + '_ {
        self.window.iter()
    }

    /// Learns a batch (at single precision). A full window first forgets the points the batch
    /// pushes out, oldest first, so that a tree never holds more than the window: its depth
    /// limit, `log₄(n/η)`, is the window's. Learning first would let every new point see the
    /// window plus one, and where `ω/η` is a power of four (the defaults, and the paper's) that
    /// lifts the limit past a whole level: once full, the trees would grow a level deeper than
    /// the window allows, a quarter more nodes for the same points, split from re-created ones.
    /// Of a batch longer than the window, only its last `ω` points are learned.
    pub fn learn_batch(&mut self, batch: &[Vec<f64>]) {
        let rounded: Vec<Vec<f64>> = batch
            .iter()
            .filter(|p| p.len() == self.dim && p.iter().all(|v| v.is_finite()))
            .map(|p| p.iter().map(|v| single(*v)).collect())
            .collect();
        let mut points: Vec<&[f64]> = rounded.iter().map(|p| p.as_slice()).collect();
        if points.is_empty() {
            return;
        }
        let window = self.params.window;
        if window > 0 {
            if points.len() > window {
                points.drain(..points.len() - window);
            }
            let excess = (self.data_size + points.len()).saturating_sub(window);
            let old = self.window.pop_front(excess);
            if !old.is_empty() {
                let refs: Vec<&[f64]> = old.iter().map(|v| v.as_slice()).collect();
                self.data_size -= refs.len();
                for t in &mut self.trees {
                    t.unlearn(&self.params, &mut self.rng, &refs, self.dim);
                }
            }
        }
        for t in &mut self.trees {
            t.learn(&self.params, &mut self.rng, &points, self.dim);
        }
        self.data_size += points.len();
        if window > 0 {
            for p in &points {
                self.window.push(p);
            }
        }
    }

    pub fn learn(&mut self, point: &[f64]) {
        self.learn_batch(&[point.to_vec()]);
    }

    /// The anomaly score in [0, 1]; 0.5 (undecided) before anything was learned.
    pub fn score(&self, x: &[f64]) -> f64 {
        if self.data_size == 0 || x.len() != self.dim {
            return 0.5;
        }
        // At the precision points are learned at: a point scores as it would be learned.
        let x: Vec<f64> = x
            .iter()
            .map(|v| if v.is_finite() { single(*v) } else { *v })
            .collect();
        let mean = self
            .trees
            .iter()
            .map(|t| t.depth(&self.params, &x))
            .sum::<f64>()
            / self.trees.len() as f64;
        let norm = random_path_length(
            self.params.max_leaf_samples,
            self.data_size as f64 * self.params.subsample,
        );
        2f64.powf(-mean / (norm + f64::EPSILON))
    }

    /// Nodes alive across all trees (memory use).
    pub fn nodes(&self) -> usize {
        self.trees.iter().map(|t| t.live_nodes()).sum()
    }

    /// Node slots held across all trees, live or free for reuse.
    pub fn node_slots(&self) -> usize {
        self.trees.iter().map(|t| t.nodes.len()).sum()
    }

    /// Bytes the forest holds on the heap (what its buffers have allocated, slack included).
    pub fn heap_bytes(&self) -> usize {
        use std::mem::size_of;
        let trees: usize = self
            .trees
            .iter()
            .map(|t| {
                t.nodes.capacity() * size_of::<Node>()
                    + t.boxes.capacity() * size_of::<f32>()
                    + t.free.capacity() * size_of::<usize>()
            })
            .sum();
        trees
            + self.trees.capacity() * size_of::<Tree>()
            + self.window.data.capacity() * size_of::<f32>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(rng: &mut Rng, n: usize) -> Vec<Vec<f64>> {
        (0..n)
            .map(|_| vec![rng.uniform(-1.0, 1.0), rng.uniform(-1.0, 1.0)])
            .collect()
    }

    #[test]
    fn outliers_score_higher_than_inliers() {
        let mut rng = Rng::new(7);
        let params = ForestParams {
            bounded: true,
            ..ForestParams::default()
        };
        let mut f = OnlineForest::new(params, 2, 42);
        for chunk in cluster(&mut rng, 3000).chunks(100) {
            f.learn_batch(chunk);
        }
        let inlier = f.score(&[0.1, -0.2]);
        let outlier = f.score(&[8.0, 8.0]);
        assert!(outlier > 0.6, "outlier {outlier}");
        assert!(inlier < 0.5, "inlier {inlier}");
        assert!(outlier > inlier + 0.2);
        assert_eq!(f.len(), 2048, "the window bounds what is remembered");
    }

    #[test]
    fn without_bounds_far_points_hardly_stand_out() {
        // The reason for `bounded`: the paper's scoring gives a point far outside all data about
        // the score of the edge of the data.
        let mut rng = Rng::new(7);
        let mut f = OnlineForest::new(ForestParams::default(), 2, 42);
        for chunk in cluster(&mut rng, 3000).chunks(100) {
            f.learn_batch(chunk);
        }
        let edge = f.score(&[0.99, 0.99]);
        let far = f.score(&[8.0, 8.0]);
        assert!((far - edge).abs() < 0.1, "edge {edge} far {far}");
    }

    #[test]
    fn same_seed_same_points_same_scores() {
        let mut rng = Rng::new(1);
        let data = cluster(&mut rng, 1000);
        let mut a = OnlineForest::new(ForestParams::default(), 2, 9);
        let mut b = OnlineForest::new(ForestParams::default(), 2, 9);
        let mut c = OnlineForest::new(ForestParams::default(), 2, 10);
        for chunk in data.chunks(50) {
            a.learn_batch(chunk);
            b.learn_batch(chunk);
            c.learn_batch(chunk);
        }
        for x in [[0.0, 0.0], [0.9, -0.9], [3.0, 1.0]] {
            assert_eq!(a.score(&x), b.score(&x));
        }
        assert_ne!(a.score(&[0.9, -0.9]), c.score(&[0.9, -0.9]));
    }

    #[test]
    fn forgetting_follows_a_moving_distribution() {
        let params = ForestParams {
            window: 512,
            max_leaf_samples: 16,
            ..ForestParams::default()
        };
        let mut f = OnlineForest::new(params, 1, 3);
        let mut rng = Rng::new(5);
        for _ in 0..20 {
            let batch: Vec<Vec<f64>> = (0..100).map(|_| vec![rng.uniform(0.0, 1.0)]).collect();
            f.learn_batch(&batch);
        }
        let before = f.score(&[10.5]);
        for _ in 0..20 {
            let batch: Vec<Vec<f64>> = (0..100).map(|_| vec![rng.uniform(10.0, 11.0)]).collect();
            f.learn_batch(&batch);
        }
        let after = f.score(&[10.5]);
        let old = f.score(&[0.5]);
        assert!(after < before, "new normal learned: {before} -> {after}");
        assert!(old > after, "old region forgotten: {old} vs {after}");
        assert!(f.nodes() < 32 * 64, "collapsed nodes are reused");
    }

    #[test]
    fn a_node_takes_24_bytes() {
        assert_eq!(std::mem::size_of::<Node>(), 24);
    }

    #[test]
    fn bad_points_are_ignored() {
        let mut f = OnlineForest::new(ForestParams::default(), 2, 1);
        f.learn_batch(&[vec![f64::NAN, 1.0], vec![1.0]]);
        assert!(f.is_empty());
        assert_eq!(f.score(&[1.0, 1.0]), 0.5);
    }

    #[test]
    fn the_window_keeps_the_latest_points_in_order_whatever_the_batches() {
        let params = ForestParams {
            window: 64,
            max_leaf_samples: 8,
            ..ForestParams::default()
        };
        let mut f = OnlineForest::new(params, 2, 1);
        let mut all: Vec<Vec<f64>> = Vec::new();
        let mut next = 0.0;
        // Batches shorter than the window, one that wraps the ring, and one longer than it.
        for size in [10, 30, 50, 7, 64, 100, 3] {
            let batch: Vec<Vec<f64>> = (0..size)
                .map(|_| {
                    next += 1.0;
                    vec![next, -next / 3.0]
                })
                .collect();
            f.learn_batch(&batch);
            all.extend(batch);
            let kept: Vec<Vec<f64>> = f.window().collect();
            // Held at single precision.
            let want: Vec<Vec<f64>> = all[all.len().saturating_sub(64)..]
                .iter()
                .map(|p| p.iter().map(|v| f64::from(*v as f32)).collect())
                .collect();
            assert_eq!(kept, want, "after a batch of {size}");
            assert_eq!(f.len(), want.len());
        }
        // Every point learned was unlearned once: the trees count the window, no more.
        for t in &f.trees {
            let root = t.root.unwrap();
            assert_eq!(t.nodes[root].count(), 64);
        }
    }

    #[test]
    fn a_full_window_grows_no_deeper_than_the_window_allows() {
        // ω/η = 64 = 4³: leaves go down to depth 3 and no further, before the window fills and
        // after, one point at a time as the detector learns.
        let params = ForestParams {
            window: 512,
            max_leaf_samples: 8,
            bounded: true,
            ..ForestParams::default()
        };
        let mut f = OnlineForest::new(params, 2, 3);
        let mut rng = Rng::new(11);
        let deepest = |f: &OnlineForest| {
            f.trees
                .iter()
                .flat_map(|t| {
                    let mut live = Vec::new();
                    let mut stack: Vec<usize> = t.root.into_iter().collect();
                    while let Some(i) = stack.pop() {
                        live.push(t.nodes[i].depth());
                        if let Some(s) = t.nodes[i].split() {
                            stack.extend([s.left, s.right]);
                        }
                    }
                    live
                })
                .max()
                .unwrap_or(0)
        };
        for p in cluster(&mut rng, 512) {
            f.learn(&p);
        }
        assert_eq!(deepest(&f), 3);
        for p in cluster(&mut rng, 1500) {
            f.learn(&p);
        }
        assert_eq!(f.len(), 512);
        assert_eq!(deepest(&f), 3, "a tree grew past the window's depth limit");
    }
}
