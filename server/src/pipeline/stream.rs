//! Copies into the output ring with non-temporal (streaming) stores.
//!
//! The processor writes about 900 bytes of events per command into the output ring, and the
//! ring (11 MiB at the default 64Ki slots) is far larger than the processor's caches. With
//! ordinary stores, each slot line is first read into the processor's cache (a read for
//! ownership, often from the consumer's core or from memory), then evicts a line of the
//! engine's own working set. Streaming stores (`movntdq`) write whole lines to memory
//! without reading them and without displacing the engine's data; the consumer reads them
//! from memory with sequential prefetching. On the AMD host the pipeline's paired ratio to
//! direct apply rose from 0.443x to 0.534x and from 0.368x to 0.485x in two A/B runs of 8
//! interleaved pairs each (2026-12-04; ADR-006, docs/benchmarks.md §3).
//!
//! **Invariants**
//! - [`OutputSlot`] is 16-byte aligned and a multiple of 16 bytes, so a slot is copied in
//!   whole 16-byte chunks with aligned streaming stores.
//! - Streaming stores are weakly ordered: [`publish_fence`] must run after the last copy of
//!   a batch and before the ring's cursor is published (a release store does not order
//!   them). `flush` calls it at the end of the batch-publish closure.
//!
//! **Performance**: one 16-byte load and one streaming store per chunk, 11 per slot, written
//! as inline assembly so that padding bytes (an enum's unused tail) are copied as memory,
//! never read into a Rust value.
//!
//! **Known limitations**: other targets than x86_64 use an ordinary copy.

use crate::pipeline::OutputSlot;

const _: () = assert!(
    align_of::<OutputSlot>() >= 16 && size_of::<OutputSlot>().is_multiple_of(16),
    "OutputSlot must be copyable in aligned 16-byte chunks"
);

/// Copies `src` into the ring slot `dst` with streaming stores (x86_64).
#[inline(always)]
pub(crate) fn copy_slot(dst: &mut OutputSlot, src: &OutputSlot) {
    #[cfg(target_arch = "x86_64")]
    {
        let chunks = size_of::<OutputSlot>() / 16;
        // SAFETY: `dst` and `src` are valid, distinct (`&mut` and `&`) and 16-byte aligned
        // (the type's alignment, asserted above), and `chunks * 16` is exactly their size, so
        // every load reads `src` and every aligned store (`movntdq`) writes `dst`. The copy
        // is byte-for-byte, so `dst` holds a valid `OutputSlot` afterwards; it is `Copy` (no
        // destructor is skipped). xmm0 and the flags are declared clobbered.
        unsafe {
            std::arch::asm!(
                "2:",
                "movdqa xmm0, [{src}]",
                "movntdq [{dst}], xmm0",
                "add {src}, 16",
                "add {dst}, 16",
                "dec {n}",
                "jnz 2b",
                src = inout(reg) src as *const OutputSlot => _,
                dst = inout(reg) dst as *mut OutputSlot => _,
                n = inout(reg) chunks => _,
                out("xmm0") _,
                options(nostack),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        *dst = *src;
    }
}

/// Orders every streaming store before the stores that follow it (the ring's cursor).
#[inline(always)]
pub(crate) fn publish_fence() {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `sfence` has no operands and no memory-safety preconditions.
    unsafe {
        std::arch::asm!("sfence", options(nostack, preserves_flags));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pipeline::Origin;
    use kuku_engine::{AccountId, Amount, Event};

    #[test]
    fn a_streamed_slot_equals_its_source() {
        let sources = [
            OutputSlot {
                seq: 7,
                ts: 1_700_000_000_000_000_123,
                origin: Origin(42),
                event: Event::AccountUpdated {
                    account: AccountId(9),
                    cash: Amount(1_234_567),
                    cash_hold: Amount(89),
                },
                last: true,
            },
            OutputSlot {
                seq: u64::MAX,
                ts: 0,
                origin: Origin::INTERNAL,
                event: Event::DayStarted {
                    trading_day: 20261204,
                },
                last: false,
            },
        ];
        let mut ring = vec![crate::pipeline::output_factory(); 4];
        for (i, src) in sources.iter().enumerate() {
            copy_slot(&mut ring[i + 1], src);
        }
        publish_fence();
        for (i, src) in sources.iter().enumerate() {
            let got = ring[i + 1];
            assert_eq!(
                (got.seq, got.ts, got.origin, got.last),
                (src.seq, src.ts, src.origin, src.last)
            );
            assert_eq!(got.event, src.event);
        }
        assert_eq!(ring[0].seq, 0, "neighbouring slots are untouched");
        assert_eq!(ring[3].seq, 0);
    }
}
