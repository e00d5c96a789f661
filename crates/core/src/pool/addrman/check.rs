//! The book's consistency check (Bitcoin Core: `CheckAddrman`).

use super::*;

impl AddrMan {
    /// Verifies every invariant of the structure (Bitcoin Core: `CheckAddrman`): each entry is
    /// indexed, in the random vector once, in the slots it records and nowhere else, at the
    /// slots its key gives; counts and fill levels match. Linear in the table size: for tests
    /// and after loading.
    pub fn check(&self) -> Result<(), AddrManError> {
        use AddrManError::Inconsistent as Bad;
        let live = self.entries.iter().flatten().count();
        if live != self.random.len() || live != self.index.len() {
            return Err(Bad("entry, index and random-order sizes differ"));
        }
        let mut counts = [TableCounts::default(); 5];
        let mut new_refs = 0usize;
        for (i, slot) in self.entries.iter().enumerate() {
            let Some(e) = slot else { continue };
            let id = EntryId::from_index(i);
            if self.find(&e.addr) != Some(id) {
                return Err(Bad("entry not indexed under its address"));
            }
            if self.random.get(e.random_pos as usize) != Some(&id) {
                return Err(Bad("random-order position wrong"));
            }
            let c = &mut counts[net_index(e.addr.network())];
            match e.place {
                Place::New(refs) => {
                    if refs.len() == 0 {
                        return Err(Bad("new entry without a bucket"));
                    }
                    for &s in refs.as_slice() {
                        if self.new_table[s.index()] != Some(id) {
                            return Err(Bad("new slot does not hold its entry"));
                        }
                        if self.bucketer.new_slot(s.bucket(), &e.addr) != s {
                            return Err(Bad("new entry at the wrong position"));
                        }
                        if refs
                            .as_slice()
                            .iter()
                            .filter(|&&o| o.bucket() == s.bucket())
                            .count()
                            > 1
                        {
                            return Err(Bad("new entry twice in one bucket"));
                        }
                    }
                    new_refs += usize::from(refs.len());
                    c.new += 1;
                }
                Place::Tried(s) => {
                    if self.tried_table[s.index()] != Some(id) {
                        return Err(Bad("tried slot does not hold its entry"));
                    }
                    if self.bucketer.tried_slot(&e.addr) != s {
                        return Err(Bad("tried entry at the wrong slot"));
                    }
                    if e.last_success.is_none() {
                        return Err(Bad("tried entry never connected"));
                    }
                    c.tried += 1;
                }
            }
        }
        if counts != self.counts {
            return Err(Bad("per-network counts wrong"));
        }
        let fill_ok = |table: &[Option<EntryId>], fill: &[u8]| {
            let mut total = 0;
            let ok = table.chunks(BUCKET_SIZE).zip(fill).all(|(bucket, &f)| {
                let n = bucket.iter().filter(|s| s.is_some()).count();
                total += n;
                n == usize::from(f)
            });
            ok.then_some(total)
        };
        if fill_ok(&self.new_table, &self.new_fill) != Some(new_refs)
            || fill_ok(&self.tried_table, &self.tried_fill) != Some(self.counts().tried)
        {
            return Err(Bad("table slots and bucket fill disagree with the entries"));
        }
        if self.collisions.len() > MAX_TRIED_COLLISIONS
            || self.collisions.iter().any(|c| {
                self.entries
                    .get(c.index())
                    .and_then(Option::as_ref)
                    .is_none()
            })
        {
            return Err(Bad("collision set names missing entries"));
        }
        Ok(())
    }
}
