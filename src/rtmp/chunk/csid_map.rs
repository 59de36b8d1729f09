//! Per chunk-stream-id state, looked up once per chunk. A connection uses a handful of chunk
//! stream ids (2 control, 3 commands, 4-6 media), so a short vector scanned in order beats a
//! hashed map: SipHash of the id showed in the ingest profile for every chunk read.

/// A small map from chunk stream id to `V`, in first-use order.
#[derive(Debug, Clone)]
pub struct CsidMap<V> {
    entries: Vec<(u32, V)>,
}

impl<V> Default for CsidMap<V> {
    fn default() -> Self {
        CsidMap {
            entries: Vec::new(),
        }
    }
}

impl<V> CsidMap<V> {
    /// The state of `csid`, if it was used.
    pub fn get(&self, csid: u32) -> Option<&V> {
        self.entries
            .iter()
            .find(|(c, _)| *c == csid)
            .map(|(_, v)| v)
    }

    /// The same, mutable.
    pub fn get_mut(&mut self, csid: u32) -> Option<&mut V> {
        self.entries
            .iter_mut()
            .find(|(c, _)| *c == csid)
            .map(|(_, v)| v)
    }

    /// The state of `csid`, made with `Default` on first use.
    pub fn entry_or_default(&mut self, csid: u32) -> &mut V
    where
        V: Default,
    {
        let i = match self.entries.iter().position(|(c, _)| *c == csid) {
            Some(i) => i,
            None => {
                self.entries.push((csid, V::default()));
                self.entries.len() - 1
            }
        };
        &mut self.entries[i].1
    }

    /// Set the state of `csid`.
    pub fn insert(&mut self, csid: u32, value: V) {
        match self.get_mut(csid) {
            Some(v) => *v = value,
            None => self.entries.push((csid, value)),
        }
    }

    /// Every used id with its state, in first-use order.
    pub fn iter(&self) -> impl Iterator<Item = (&u32, &V)> {
        self.entries.iter().map(|(c, v)| (c, v))
    }

    /// Every state, in first-use order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().map(|(_, v)| v)
    }

    /// Forget `csid` (its state comes from elsewhere now).
    pub fn remove(&mut self, csid: u32) -> Option<V> {
        let i = self.entries.iter().position(|(c, _)| *c == csid)?;
        Some(self.entries.remove(i).1)
    }

    /// How many chunk stream ids were used.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True before the first use.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_one_value_per_id() {
        let mut m: CsidMap<u32> = CsidMap::default();
        assert!(m.is_empty() && m.get(3).is_none());
        *m.entry_or_default(3) += 1;
        *m.entry_or_default(3) += 1;
        m.insert(70_000, 9);
        m.insert(70_000, 10);
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(3), Some(&2));
        assert_eq!(m.get(70_000), Some(&10));
        *m.get_mut(70_000).unwrap() = 11;
        assert_eq!(m.get(70_000), Some(&11));
        assert!(m.get_mut(4).is_none());
        let ids: Vec<u32> = m.iter().map(|(c, _)| *c).collect();
        assert_eq!(ids, [3, 70_000], "first-use order");
        assert_eq!(m.values().copied().collect::<Vec<_>>(), [2, 11]);
        assert_eq!(m.remove(3), Some(2));
        assert_eq!(m.remove(3), None);
        assert_eq!((m.len(), m.get(70_000)), (1, Some(&11)));
    }
}
