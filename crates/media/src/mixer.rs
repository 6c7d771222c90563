//! Mixer of N sources with per-source gain and mute, soft clipping and mix-minus.
//!
//! Each tick, every live source hands in one [`Frame48`] (decoded speech, the
//! bot's frame, a prompt player...). [`Mixer::mix`] accumulates them in `f32`
//! (so a loud sum never wraps around the way integer mixing does) and soft-clips
//! the result into `[-1.0, 1.0]`. For conferences, each participant must hear
//! everyone but itself: [`Mixer::mix_minus_into`] computes that as
//! `total − own` (Janus AudioBridge's trick), so N outputs cost N subtractions
//! instead of N² additions.
//!
//! Real-time contract: pushing, mixing and reading never allocate, lock or
//! block. A source slot's 3.75 KiB input buffer is allocated the first time
//! [`Mixer::add_source`] uses that slot and kept after removal, so a mixer
//! sized for 8 speakers in a 2-party call does not carry 6 idle buffers, and
//! once a slot has been used, adding and removing sources allocates nothing.

use crate::frame::{Frame48, SILENT_FRAME_48};

/// Below this magnitude samples pass through bit-exactly; above it the soft knee
/// bends them towards ±1.0. High enough that ordinary speech is never touched.
const SOFT_CLIP_KNEE: f32 = 0.8;

/// Handle to a source slot. Carries a generation so a stale handle (its source
/// was removed and the slot reused) is rejected instead of touching another source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SourceId {
    index: u32,
    generation: u32,
}

impl SourceId {
    /// The slot index (stable while the source lives; `< capacity`).
    pub fn index(self) -> usize {
        self.index as usize
    }
}

/// What went wrong with a mixer call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MixerError {
    /// Every slot is taken; the capacity was fixed at construction.
    #[error("mixer is full: all {capacity} source slots are in use")]
    Full {
        /// The fixed capacity.
        capacity: usize,
    },
    /// The handle does not name a live source (removed, or from another mixer).
    #[error("unknown mixer source {id:?}")]
    UnknownSource {
        /// The rejected handle.
        id: SourceId,
    },
}

struct Slot {
    generation: u32,
    live: bool,
    gain: f32,
    muted: bool,
    /// An input was pushed since the last `mix`.
    pending: bool,
    /// The source was part of the last `mix` (pending, not muted): its
    /// contribution must be taken out of the total for its mix-minus.
    contributed: bool,
    /// Allocated on the slot's first use, then kept.
    input: Option<Box<Frame48>>,
}

/// Fixed-capacity N-source mixer. See the module docs.
pub struct Mixer {
    slots: Vec<Slot>,
    /// Unclipped sum of the last mix; mix-minus subtracts from it.
    total: Box<Frame48>,
    /// Soft-clipped copy of `total`: what a listener that is no source hears.
    mixed: Box<Frame48>,
    contributors: usize,
}

impl Mixer {
    /// A mixer with room for `capacity` sources (input buffers come with first use).
    pub fn with_capacity(capacity: usize) -> Self {
        let slots = (0..capacity)
            .map(|_| Slot {
                generation: 0,
                live: false,
                gain: 1.0,
                muted: false,
                pending: false,
                contributed: false,
                input: None,
            })
            .collect();
        Self {
            slots,
            total: Box::new(SILENT_FRAME_48),
            mixed: Box::new(SILENT_FRAME_48),
            contributors: 0,
        }
    }

    /// Allocates every slot's input buffer now, so that adding a source later never allocates.
    /// For mixers whose sources join while the tick runs (a conference whose parties come and
    /// go); a call that adds its sources at set-up can skip it and save the memory of unused slots.
    pub fn preallocate(&mut self) {
        for slot in &mut self.slots {
            slot.input.get_or_insert_with(|| Box::new(SILENT_FRAME_48));
        }
    }

    /// Maximum number of sources.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Number of live sources.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.live).count()
    }

    /// True when no source is live.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Adds a source with gain 1.0, unmuted.
    pub fn add_source(&mut self) -> Result<SourceId, MixerError> {
        let capacity = self.capacity();
        let (index, slot) = self
            .slots
            .iter_mut()
            .enumerate()
            .find(|(_, s)| !s.live)
            .ok_or(MixerError::Full { capacity })?;
        slot.input.get_or_insert_with(|| Box::new(SILENT_FRAME_48));
        slot.live = true;
        slot.gain = 1.0;
        slot.muted = false;
        slot.pending = false;
        slot.contributed = false;
        Ok(SourceId {
            index: index as u32,
            generation: slot.generation,
        })
    }

    /// Removes a source; its handle (and copies of it) become invalid.
    pub fn remove_source(&mut self, id: SourceId) -> Result<(), MixerError> {
        let slot = self.slot_mut(id)?;
        slot.live = false;
        slot.pending = false;
        slot.contributed = false;
        slot.generation = slot.generation.wrapping_add(1);
        Ok(())
    }

    /// Sets a linear gain (1.0 = unchanged). Non-finite or negative gains are
    /// treated as 0.0 so one bad setting cannot poison everyone's mix.
    pub fn set_gain(&mut self, id: SourceId, gain: f32) -> Result<(), MixerError> {
        let gain = if gain.is_finite() && gain > 0.0 {
            gain
        } else {
            0.0
        };
        self.slot_mut(id)?.gain = gain;
        Ok(())
    }

    /// The source's gain.
    pub fn gain(&self, id: SourceId) -> Result<f32, MixerError> {
        Ok(self.slot(id)?.gain)
    }

    /// Mutes or unmutes a source. A muted source is left out of every output.
    pub fn set_muted(&mut self, id: SourceId, muted: bool) -> Result<(), MixerError> {
        self.slot_mut(id)?.muted = muted;
        Ok(())
    }

    /// Whether the source is muted.
    pub fn is_muted(&self, id: SourceId) -> Result<bool, MixerError> {
        Ok(self.slot(id)?.muted)
    }

    /// Hands in this tick's frame for a source (copied). Non-finite samples
    /// become 0.0. A source that pushes nothing before [`Mixer::mix`] is silent
    /// for that tick.
    pub fn push(&mut self, id: SourceId, frame: &Frame48) -> Result<(), MixerError> {
        let slot = self.slot_mut(id)?;
        let input = slot
            .input
            .as_deref_mut()
            .ok_or(MixerError::UnknownSource { id })?;
        for (dst, &src) in input.iter_mut().zip(frame.iter()) {
            *dst = if src.is_finite() { src } else { 0.0 };
        }
        slot.pending = true;
        Ok(())
    }

    /// Lends the source's input buffer so a decoder can write straight into it
    /// (saves a copy); marks the source as having input for this tick. The
    /// caller is trusted to write finite samples.
    pub fn input_mut(&mut self, id: SourceId) -> Result<&mut Frame48, MixerError> {
        let slot = self.slot_mut(id)?;
        slot.pending = true;
        slot.input
            .as_deref_mut()
            .ok_or(MixerError::UnknownSource { id })
    }

    /// Mixes the frames pushed since the last call and returns the soft-clipped
    /// sum of all unmuted sources.
    pub fn mix(&mut self) -> &Frame48 {
        self.total.fill(0.0);
        self.contributors = 0;
        for slot in &mut self.slots {
            slot.contributed = slot.live && slot.pending && !slot.muted;
            slot.pending = false;
            let Some(input) = slot.input.as_deref().filter(|_| slot.contributed) else {
                slot.contributed = false;
                continue;
            };
            self.contributors += 1;
            let gain = slot.gain;
            if gain == 1.0 {
                for (t, &x) in self.total.iter_mut().zip(input.iter()) {
                    *t += x;
                }
            } else {
                for (t, &x) in self.total.iter_mut().zip(input.iter()) {
                    *t += gain * x;
                }
            }
        }
        soft_clip_into(&self.total, &mut self.mixed);
        &self.mixed
    }

    /// The soft-clipped result of the last [`Mixer::mix`].
    pub fn mixed(&self) -> &Frame48 {
        &self.mixed
    }

    /// How many sources contributed to the last mix.
    pub fn contributors(&self) -> usize {
        self.contributors
    }

    /// The only source that contributed to the last mix, if exactly one did:
    /// a caller can then forward that source's encoded packet unchanged (Opus
    /// passthrough, as songbird does) instead of decoding, mixing and re-encoding.
    pub fn single_contributor(&self) -> Option<SourceId> {
        if self.contributors != 1 {
            return None;
        }
        self.slots
            .iter()
            .enumerate()
            .find(|(_, s)| s.contributed)
            .map(|(index, s)| SourceId {
                index: index as u32,
                generation: s.generation,
            })
    }

    /// Writes what source `id` should hear from the last mix: everyone but
    /// itself (`total − own · gain`), soft-clipped. For a source that did not
    /// contribute (muted, or silent this tick) this is the full mix.
    pub fn mix_minus_into(&self, id: SourceId, out: &mut Frame48) -> Result<(), MixerError> {
        let slot = self.slot(id)?;
        let input = match slot.input.as_deref() {
            Some(input) if slot.contributed => input,
            _ => {
                out.copy_from_slice(&self.mixed[..]);
                return Ok(());
            }
        };
        let gain = slot.gain;
        for ((o, &t), &x) in out.iter_mut().zip(self.total.iter()).zip(input.iter()) {
            *o = t - gain * x;
        }
        soft_clip_in_place(out);
        Ok(())
    }

    fn slot(&self, id: SourceId) -> Result<&Slot, MixerError> {
        match self.slots.get(id.index()) {
            Some(s) if s.live && s.generation == id.generation => Ok(s),
            _ => Err(MixerError::UnknownSource { id }),
        }
    }

    fn slot_mut(&mut self, id: SourceId) -> Result<&mut Slot, MixerError> {
        match self.slots.get_mut(id.index()) {
            Some(s) if s.live && s.generation == id.generation => Ok(s),
            _ => Err(MixerError::UnknownSource { id }),
        }
    }
}

impl std::fmt::Debug for Mixer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mixer")
            .field("capacity", &self.capacity())
            .field("sources", &self.len())
            .field("contributors", &self.contributors)
            .finish()
    }
}

/// Soft clipping of one sample: identity up to the knee, then a tanh curve
/// that meets it with the same slope and approaches ±1.0 without reaching past
/// it. Continuous and monotonic, so loud sums distort gently instead of wrapping.
#[inline]
pub fn soft_clip(x: f32) -> f32 {
    let a = x.abs();
    if a <= SOFT_CLIP_KNEE {
        return x;
    }
    let room = 1.0 - SOFT_CLIP_KNEE;
    let y = SOFT_CLIP_KNEE + room * ((a - SOFT_CLIP_KNEE) / room).tanh();
    y.min(1.0).copysign(x)
}

/// Soft-clips a frame in place; a frame whose peak is below the knee (the
/// common case) is only scanned, not rewritten.
pub fn soft_clip_in_place(frame: &mut [f32]) {
    if peak(frame) <= SOFT_CLIP_KNEE {
        return;
    }
    for s in frame.iter_mut() {
        *s = soft_clip(*s);
    }
}

fn soft_clip_into(src: &Frame48, dst: &mut Frame48) {
    dst.copy_from_slice(&src[..]);
    soft_clip_in_place(&mut dst[..]);
}

/// Largest absolute sample; written as a fold the compiler can vectorise.
fn peak(frame: &[f32]) -> f32 {
    frame.iter().fold(0.0f32, |m, s| m.max(s.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::SAMPLES_PER_FRAME_48K;

    fn constant(v: f32) -> Frame48 {
        [v; SAMPLES_PER_FRAME_48K]
    }

    fn ramp(scale: f32) -> Frame48 {
        let mut f = SILENT_FRAME_48;
        for (i, s) in f.iter_mut().enumerate() {
            *s = scale * ((i as f32) * 0.05).sin();
        }
        f
    }

    #[test]
    fn quiet_sources_sum_exactly() {
        let mut m = Mixer::with_capacity(3);
        let a = m.add_source().unwrap();
        let b = m.add_source().unwrap();
        m.push(a, &ramp(0.2)).unwrap();
        m.push(b, &ramp(0.3)).unwrap();
        let out = *m.mix();
        let want = ramp(0.2);
        let want_b = ramp(0.3);
        for i in 0..SAMPLES_PER_FRAME_48K {
            assert_eq!(out[i], want[i] + want_b[i]);
        }
        assert_eq!(m.contributors(), 2);
    }

    #[test]
    fn loud_sum_is_soft_clipped_not_wrapped() {
        let mut m = Mixer::with_capacity(10);
        let ids: Vec<_> = (0..10).map(|_| m.add_source().unwrap()).collect();
        for id in &ids {
            m.push(*id, &constant(0.9)).unwrap();
        }
        let out = m.mix();
        // 9.0 in, close to but never past full scale, and still positive.
        assert!(out.iter().all(|&s| s > 0.99 && s <= 1.0), "{}", out[0]);
        for id in &ids {
            m.push(*id, &constant(-0.9)).unwrap();
        }
        let out = m.mix();
        assert!(out.iter().all(|&s| (-1.0..-0.99).contains(&s)));
    }

    #[test]
    fn soft_clip_is_continuous_monotonic_and_bounded() {
        let mut prev = soft_clip(-4.0);
        let mut x = -4.0f32;
        while x <= 4.0 {
            let y = soft_clip(x);
            assert!(y >= prev, "not monotonic at {x}");
            assert!((-1.0..=1.0).contains(&y));
            assert!((y - prev).abs() < 0.01, "jump at {x}");
            prev = y;
            x += 0.001;
        }
        assert_eq!(soft_clip(0.5), 0.5);
        assert_eq!(soft_clip(-SOFT_CLIP_KNEE), -SOFT_CLIP_KNEE);
    }

    #[test]
    fn gain_and_mute_apply() {
        let mut m = Mixer::with_capacity(2);
        let a = m.add_source().unwrap();
        let b = m.add_source().unwrap();
        m.set_gain(a, 0.5).unwrap();
        m.set_muted(b, true).unwrap();
        m.push(a, &constant(0.4)).unwrap();
        m.push(b, &constant(0.4)).unwrap();
        assert!(m.mix().iter().all(|&s| (s - 0.2).abs() < 1e-6));
        assert_eq!(m.contributors(), 1);
        assert_eq!(m.single_contributor(), Some(a));
        // Bad gains are zero, not NaN.
        m.set_gain(a, f32::NAN).unwrap();
        assert_eq!(m.gain(a).unwrap(), 0.0);
        m.set_muted(b, false).unwrap();
        assert!(!m.is_muted(b).unwrap());
    }

    #[test]
    fn non_finite_input_is_silenced() {
        let mut m = Mixer::with_capacity(2);
        let a = m.add_source().unwrap();
        let b = m.add_source().unwrap();
        let mut bad = constant(0.1);
        bad[3] = f32::NAN;
        bad[4] = f32::INFINITY;
        m.push(a, &bad).unwrap();
        m.push(b, &constant(0.1)).unwrap();
        let out = m.mix();
        assert!(out.iter().all(|s| s.is_finite()));
        assert!((out[3] - 0.1).abs() < 1e-6);
    }

    #[test]
    fn mix_minus_is_everyone_but_self() {
        let mut m = Mixer::with_capacity(5);
        let ids: Vec<_> = (0..4).map(|_| m.add_source().unwrap()).collect();
        let levels = [0.01f32, 0.02, 0.04, 0.08];
        for (id, l) in ids.iter().zip(levels) {
            m.push(*id, &constant(l)).unwrap();
        }
        m.mix();
        let total: f32 = levels.iter().sum();
        let mut out = SILENT_FRAME_48;
        for (id, l) in ids.iter().zip(levels) {
            m.mix_minus_into(*id, &mut out).unwrap();
            assert!(out.iter().all(|&s| (s - (total - l)).abs() < 1e-6));
        }
        // A muted source hears everyone else (its own input is not in the total).
        m.set_muted(ids[0], true).unwrap();
        for (id, l) in ids.iter().zip(levels) {
            m.push(*id, &constant(l)).unwrap();
        }
        m.mix();
        m.mix_minus_into(ids[0], &mut out).unwrap();
        assert!(out.iter().all(|&s| (s - (total - levels[0])).abs() < 1e-6));
    }

    #[test]
    fn mix_minus_of_loud_conference_stays_bounded() {
        let mut m = Mixer::with_capacity(3);
        let ids: Vec<_> = (0..3).map(|_| m.add_source().unwrap()).collect();
        for id in &ids {
            m.push(*id, &constant(0.9)).unwrap();
        }
        m.mix();
        let mut out = SILENT_FRAME_48;
        m.mix_minus_into(ids[0], &mut out).unwrap();
        // 1.8 from the other two: soft-clipped, same as mixing them alone.
        assert!(out.iter().all(|&s| s > 0.95 && s <= 1.0));
    }

    #[test]
    fn sources_without_input_are_silent_for_the_tick() {
        let mut m = Mixer::with_capacity(2);
        let a = m.add_source().unwrap();
        m.push(a, &constant(0.3)).unwrap();
        m.mix();
        // Nothing pushed this tick: silence, not a repeat of the old frame.
        assert!(m.mix().iter().all(|&s| s == 0.0));
        assert_eq!(m.contributors(), 0);
        assert_eq!(m.single_contributor(), None);
        m.input_mut(a).unwrap().fill(0.25);
        assert!(m.mix().iter().all(|&s| s == 0.25));
        assert_eq!(m.mixed()[0], 0.25);
    }

    #[test]
    fn capacity_is_fixed_and_stale_ids_are_rejected() {
        let mut m = Mixer::with_capacity(2);
        assert!(m.is_empty());
        let a = m.add_source().unwrap();
        let _b = m.add_source().unwrap();
        assert_eq!(m.add_source(), Err(MixerError::Full { capacity: 2 }));
        m.remove_source(a).unwrap();
        assert_eq!(m.len(), 1);
        let c = m.add_source().unwrap();
        assert_eq!(c.index(), a.index());
        assert_eq!(
            m.push(a, &SILENT_FRAME_48),
            Err(MixerError::UnknownSource { id: a })
        );
        assert_eq!(m.remove_source(a), Err(MixerError::UnknownSource { id: a }));
        assert!(m.push(c, &SILENT_FRAME_48).is_ok());
        assert_eq!(m.capacity(), 2);
    }
}
