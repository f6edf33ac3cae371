//! The key/value cache of one batch: one preallocated buffer per layer,
//! written in place at each decode step.
//!
//! Columns are cache positions, shared by all rows of the batch: with left
//! padding a row's first columns hold its pad tokens. Finished rows leave the
//! batch through [`KvCache::select_rows`], and columns that every remaining
//! row pads can be hidden with [`KvCache::skip_front`].

use candle_core::{Result, Tensor};

/// Keys and values of every layer, each `(batch, num_kv_heads, capacity,
/// head_dim)`, of which columns `start..len` are visible.
#[derive(Debug)]
pub struct KvCache {
    layers: Vec<Option<(Tensor, Tensor)>>,
    capacity: usize,
    start: usize,
    len: usize,
}

impl KvCache {
    /// Creates an empty cache for `num_layers` layers that holds up to
    /// `capacity` positions per row. Buffers are allocated on first use, in
    /// the dtype and device of the first keys written.
    pub fn new(num_layers: usize, capacity: usize) -> Self {
        Self {
            layers: vec![None; num_layers],
            capacity,
            start: 0,
            len: 0,
        }
    }

    /// Returns the number of visible columns: the keys a query of the next
    /// pass attends over, not counting the new tokens.
    pub fn visible_len(&self) -> usize {
        self.len - self.start
    }

    /// Writes this pass's keys and values, `(batch, num_kv_heads, new_len,
    /// head_dim)`, after the cached ones of `layer` and returns the visible
    /// keys and values including them. Every layer must append the same
    /// number of columns before [`KvCache::advance`] is called.
    pub fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (batch, kv_heads, new_len, head_dim) = k.dims4()?;
        if self.len + new_len > self.capacity {
            candle_core::bail!(
                "KV cache of capacity {} cannot take {new_len} more positions after {}",
                self.capacity,
                self.len
            );
        }
        if self.layers[layer].is_none() {
            let shape = (batch, kv_heads, self.capacity, head_dim);
            let keys = Tensor::zeros(shape, k.dtype(), k.device())?;
            let values = Tensor::zeros(shape, v.dtype(), v.device())?;
            self.layers[layer] = Some((keys, values));
        }
        let (keys, values) = self.layers[layer].as_ref().expect("allocated above");
        keys.slice_set(&k.contiguous()?, 2, self.len)?;
        values.slice_set(&v.contiguous()?, 2, self.len)?;

        let visible = self.len + new_len - self.start;
        Ok((
            keys.narrow(2, self.start, visible)?,
            values.narrow(2, self.start, visible)?,
        ))
    }

    /// Marks `new_len` columns, written to every layer by
    /// [`KvCache::append`], as cached.
    pub fn advance(&mut self, new_len: usize) {
        self.len += new_len;
    }

    /// Keeps only the batch rows at `rows` (indices into the current batch,
    /// in the order given).
    pub fn select_rows(&mut self, rows: &Tensor) -> Result<()> {
        for layer in self.layers.iter_mut().flatten() {
            *layer = (
                layer.0.index_select(rows, 0)?,
                layer.1.index_select(rows, 0)?,
            );
        }
        Ok(())
    }

    /// Hides the first `columns` visible columns from later passes, so that
    /// padding shared by every remaining row costs nothing. The caller keeps
    /// its masks in step with the visible columns.
    pub fn skip_front(&mut self, columns: usize) {
        self.start = (self.start + columns).min(self.len);
    }
}
