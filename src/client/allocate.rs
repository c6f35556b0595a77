//! Queue allocation among the consumers of a group (RocketMQ `AllocateMessageQueueAveragely`,
//! reference §8). Every consumer of the group computes the same split from the same sorted
//! inputs, so the strategy must be a pure function of (queues, consumer ids, self).

use super::body::MessageQueue;

/// The queues `current_cid` owns out of `mq_all` when the group is `cid_all`.
/// Both lists are sorted here (queues by topic/broker/queue id, ids as strings) so callers
/// cannot get a split that differs from their peers'. Empty when `current_cid` is not in
/// `cid_all` (it has not been seen by the broker yet).
pub fn allocate_averagely(
    current_cid: &str,
    mq_all: &[MessageQueue],
    cid_all: &[String],
) -> Vec<MessageQueue> {
    let mut mq_all = mq_all.to_vec();
    mq_all.sort();
    let mut cid_all = cid_all.to_vec();
    cid_all.sort();
    cid_all.dedup();
    let Some(index) = cid_all.iter().position(|c| c == current_cid) else {
        return Vec::new();
    };
    let (start, count) = averagely_range(mq_all.len(), cid_all.len(), index);
    assert!(start + count <= mq_all.len() || count == 0);
    mq_all.into_iter().skip(start).take(count).collect()
}

/// (start, count) of consumer `index` of `consumer_count` over `queue_count` queues.
pub fn averagely_range(queue_count: usize, consumer_count: usize, index: usize) -> (usize, usize) {
    assert!(consumer_count > 0, "at least one consumer");
    assert!(index < consumer_count, "index within the consumer list");
    let n = queue_count;
    let c = consumer_count;
    let modulo = n % c;
    let size = if n <= c {
        1
    } else if modulo > 0 && index < modulo {
        n / c + 1
    } else {
        n / c
    };
    let start = if modulo > 0 && index < modulo {
        index * size
    } else {
        index * size + modulo
    };
    if start >= n {
        return (start.min(n), 0);
    }
    (start, size.min(n - start))
}

/// RocketMQ `AllocateMessageQueueAveragelyByCircle`: queue j goes to consumer j % c.
pub fn allocate_by_circle(
    current_cid: &str,
    mq_all: &[MessageQueue],
    cid_all: &[String],
) -> Vec<MessageQueue> {
    let mut mq_all = mq_all.to_vec();
    mq_all.sort();
    let mut cid_all = cid_all.to_vec();
    cid_all.sort();
    cid_all.dedup();
    let Some(index) = cid_all.iter().position(|c| c == current_cid) else {
        return Vec::new();
    };
    mq_all
        .into_iter()
        .enumerate()
        .filter(|(j, _)| j % cid_all.len() == index)
        .map(|(_, mq)| mq)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queues(n: usize) -> Vec<MessageQueue> {
        // Two brokers; sorted order is b0 queues then b1 queues.
        (0..n)
            .map(|i| super::super::body::mq("T", &format!("b{}", i % 2), (i / 2) as i32))
            .collect()
    }

    fn cids(c: usize) -> Vec<String> {
        (0..c).map(|i| format!("10.0.0.{i}@{i}")).collect()
    }

    /// The formula of §8 written independently, per queue index: which consumer owns queue j.
    fn owner_by_formula(n: usize, c: usize, j: usize) -> Option<usize> {
        (0..c).find(|&i| {
            let m = n % c;
            let size = if n <= c {
                1
            } else if m > 0 && i < m {
                n / c + 1
            } else {
                n / c
            };
            let start = if m > 0 && i < m {
                i * size
            } else {
                i * size + m
            };
            let take = if start >= n { 0 } else { size.min(n - start) };
            j >= start && j < start + take
        })
    }

    #[test]
    fn averagely_matches_formula_and_partitions_queues() {
        for n in 0..40 {
            for c in 1..12 {
                let mq_all = queues(n);
                let cid_all = cids(c);
                let mut sorted_mq = mq_all.clone();
                sorted_mq.sort();
                let mut sorted_cid = cid_all.clone();
                sorted_cid.sort();
                let mut seen = vec![0usize; n];
                for (i, cid) in sorted_cid.iter().enumerate() {
                    let got = allocate_averagely(cid, &mq_all, &cid_all);
                    for mq in &got {
                        let j = sorted_mq.iter().position(|q| q == mq).unwrap();
                        seen[j] += 1;
                        assert_eq!(owner_by_formula(n, c, j), Some(i), "n={n} c={c} j={j}");
                    }
                    // Consecutive, and sizes differ by at most one across consumers.
                    let expected = if n >= c { n / c } else { usize::from(i < n) };
                    assert!(
                        got.len() == expected || got.len() == expected + 1,
                        "n={n} c={c} i={i} got {}",
                        got.len()
                    );
                }
                assert!(seen.iter().all(|&s| s == 1), "n={n} c={c}: {seen:?}");
            }
        }
    }

    #[test]
    fn averagely_known_splits() {
        // 8 queues, 3 consumers: 3,3,2.
        assert_eq!(averagely_range(8, 3, 0), (0, 3));
        assert_eq!(averagely_range(8, 3, 1), (3, 3));
        assert_eq!(averagely_range(8, 3, 2), (6, 2));
        // 2 queues, 4 consumers: the last two get nothing.
        assert_eq!(averagely_range(2, 4, 1), (1, 1));
        assert_eq!(averagely_range(2, 4, 3).1, 0);
    }

    #[test]
    fn input_order_does_not_matter_and_unknown_cid_gets_nothing() {
        let mq_all = queues(10);
        let mut reversed = mq_all.clone();
        reversed.reverse();
        let cid_all = cids(3);
        let mut cid_rev = cid_all.clone();
        cid_rev.reverse();
        for cid in &cid_all {
            assert_eq!(
                allocate_averagely(cid, &mq_all, &cid_all),
                allocate_averagely(cid, &reversed, &cid_rev)
            );
        }
        assert!(allocate_averagely("nobody", &mq_all, &cid_all).is_empty());
    }

    #[test]
    fn circle_partitions_queues() {
        let mq_all = queues(7);
        let cid_all = cids(3);
        let total: usize = cid_all
            .iter()
            .map(|c| allocate_by_circle(c, &mq_all, &cid_all).len())
            .sum();
        assert_eq!(total, 7);
        assert_eq!(allocate_by_circle(&cid_all[0], &mq_all, &cid_all).len(), 3);
    }
}
