//! The relay's port pool: even-numbered port pairs (RTP on the even port, RTCP on the next odd
//! one) handed out from a configured range, next-fit so a just-freed pair is the last to be
//! reused (late packets of an ended call do not reach the next one). Pure bookkeeping: binding
//! the sockets is the caller's job.

/// An even port from the pool: RTP here, RTCP on `self + 1` (unused with rtcp-mux).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RelayPort(u16);

impl RelayPort {
    /// The pair whose RTP port is `port` (even), as the pool hands it out.
    pub fn from_rtp(port: u16) -> Option<RelayPort> {
        (port.is_multiple_of(2) && port < u16::MAX).then_some(RelayPort(port))
    }

    pub fn rtp(self) -> u16 {
        self.0
    }

    pub fn rtcp(self) -> u16 {
        self.0 + 1
    }
}

/// The pairs of a port range and which of them are taken.
#[derive(Debug, Clone)]
pub struct PortPool {
    first: u16,
    taken: Vec<bool>,
    in_use: usize,
    cursor: usize,
}

impl PortPool {
    /// The pairs inside `lo..=hi`: the first even port ≥ `lo` up to the last pair ending ≤ `hi`.
    pub fn new(lo: u16, hi: u16) -> PortPool {
        let first = lo.saturating_add(lo & 1);
        let pairs = if hi > first {
            // The number of whole pairs in `first..=hi`.
            ((hi - first) as usize).div_ceil(2)
        } else {
            0
        };
        PortPool {
            first,
            taken: vec![false; pairs],
            in_use: 0,
            cursor: 0,
        }
    }

    /// The number of pairs in the range.
    pub fn capacity(&self) -> usize {
        self.taken.len()
    }

    /// The number of pairs taken.
    pub fn in_use(&self) -> usize {
        self.in_use
    }

    /// Takes the next free pair after the last one handed out, or `None` when all are taken.
    pub fn allocate(&mut self) -> Option<RelayPort> {
        let n = self.taken.len();
        for step in 0..n {
            let i = (self.cursor + step) % n;
            if !self.taken[i] {
                self.taken[i] = true;
                self.in_use += 1;
                self.cursor = (i + 1) % n;
                return Some(RelayPort(self.first + 2 * i as u16));
            }
        }
        None
    }

    /// Returns a pair to the pool. Releasing a pair that is not taken is a bug of the caller.
    pub fn release(&mut self, port: RelayPort) {
        let i = ((port.0 - self.first) / 2) as usize;
        debug_assert!(self.taken[i], "released port {} twice", port.0);
        if std::mem::replace(&mut self.taken[i], false) {
            self.in_use -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_even_and_next_fit() {
        let mut p = PortPool::new(10001, 10008);
        assert_eq!(p.capacity(), 3); // 10002, 10004, 10006 (10008's pair would end at 10009)
        let a = p.allocate().unwrap();
        let b = p.allocate().unwrap();
        assert_eq!((a.rtp(), a.rtcp(), b.rtp()), (10002, 10003, 10004));
        p.release(a);
        assert_eq!(p.allocate().unwrap().rtp(), 10006);
        assert_eq!(p.allocate().unwrap().rtp(), 10002);
        assert_eq!(p.allocate(), None);
        assert_eq!(p.in_use(), 3);
    }

    #[test]
    fn empty_range() {
        assert_eq!(PortPool::new(10, 10).allocate(), None);
        assert_eq!(PortPool::new(20, 10).capacity(), 0);
    }
}
