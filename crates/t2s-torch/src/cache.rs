//! Preallocated KV cache: one `[B, kv_heads, capacity, head_dim]` buffer per layer for keys and
//! values (post-RoPE). Sliding layers keep every slot too; they attend over a view starting at
//! the window's first slot, which equals HF's sliding cache semantics. Finished rows are
//! dropped with `select_rows`.

use tch::{Device, Kind, Tensor};

use crate::error::Result;

#[derive(Debug)]
pub struct KvCache {
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    len: i64,
    cap: i64,
}

impl KvCache {
    pub fn new(
        layers: usize,
        batch: i64,
        kv_heads: i64,
        cap: i64,
        head_dim: i64,
        kind: Kind,
        dev: Device,
    ) -> Result<Self> {
        let mk = || Tensor::f_zeros([batch, kv_heads, cap, head_dim], (kind, dev));
        let k = (0..layers).map(|_| mk()).collect::<Result<Vec<_>, _>>()?;
        let v = (0..layers).map(|_| mk()).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { k, v, len: 0, cap })
    }

    /// Slots filled so far.
    pub fn len(&self) -> i64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> i64 {
        self.cap
    }

    /// Store this call's keys/values `[B, kvh, S, D]` of `layer` after the filled slots and
    /// return the keys/values from slot `start` through the new ones.
    pub fn update(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
        start: i64,
    ) -> Result<(Tensor, Tensor)> {
        let s = k.size()[2];
        self.k[layer].f_narrow(2, self.len, s)?.f_copy_(k)?;
        self.v[layer].f_narrow(2, self.len, s)?.f_copy_(v)?;
        let n = self.len + s - start;
        Ok((
            self.k[layer].f_narrow(2, start, n)?,
            self.v[layer].f_narrow(2, start, n)?,
        ))
    }

    /// Store one decode step's keys/values `[B, kvh, 1, D]` of `layer` at the device-side
    /// `slot: [1]` int64 and return the whole buffers: fixed shapes and no host value, so the
    /// step can be captured in a CUDA graph. Does not move `len` (the caller tracks slots).
    pub fn write_at(
        &mut self,
        layer: usize,
        k: &Tensor,
        v: &Tensor,
        slot: &Tensor,
    ) -> Result<(Tensor, Tensor)> {
        let _ = self.k[layer].f_index_copy_(2, slot, k)?;
        let _ = self.v[layer].f_index_copy_(2, slot, v)?;
        Ok((self.k[layer].shallow_clone(), self.v[layer].shallow_clone()))
    }

    /// Called once per forward, after every layer stored its slots.
    pub fn advance(&mut self, s: i64) {
        self.len += s;
    }

    /// Keep only the rows `idx` (int64 on the cache device), in that order.
    pub fn select_rows(&mut self, idx: &Tensor) -> Result<()> {
        for t in self.k.iter_mut().chain(self.v.iter_mut()) {
            *t = t.f_index_select(0, idx)?;
        }
        Ok(())
    }
}
