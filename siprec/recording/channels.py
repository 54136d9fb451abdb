"""Which channel of the combined recording each leg gets (pure).

Metadata order first (the caller first), then m-line order, fixed when
the call starts. Legs added later go to the end, so a hold, a re-offer or
a later metadata update never moves a channel; a leg removed and offered
again keeps its channel. Only a call that started before any metadata
named its streams is ordered once more, when such metadata first arrives.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from siprec.recording.streams import StreamSlot

__all__ = ["ChannelOrder", "combine_inputs"]


class ChannelOrder:
    def __init__(self) -> None:
        self.keys: List[str] = []
        self.from_metadata = False
        # key -> (first channel, channel count) as the combined file was written
        self.layout: Optional[Dict[str, Tuple[int, int]]] = None

    def settle(self, slots: Dict[str, StreamSlot], metadata_labels: Sequence[str]) -> None:
        if self.from_metadata:
            known = set(self.keys)
            self.keys += [key for key in slots if key not in known]
            return
        ranked = {label: i for i, label in enumerate(metadata_labels)}
        if any(slot.label in ranked for slot in slots.values()):
            self.from_metadata = True
        position = {key: i for i, key in enumerate(self.keys)}
        ordered = sorted(slots.values(),
                         key=lambda s: (ranked.get(s.label, len(ranked)),
                                        position.get(s.key, len(position)), s.index))
        self.keys = [s.key for s in ordered]

    def ordered(self, slots: Dict[str, StreamSlot]) -> List[StreamSlot]:
        known = set(self.keys)
        keys = self.keys + [k for k in slots if k not in known]
        return [slots[k] for k in keys if k in slots]

    def channel_of(self, slots: Dict[str, StreamSlot]) -> Dict[str, Tuple[int, int]]:
        """(first channel, count) per leg: as combined when known, else as planned."""
        out: Dict[str, Tuple[int, int]] = {}
        channel = 0
        for slot in self.ordered(slots):
            if self.layout is not None and slot.key in self.layout:
                first, count = self.layout[slot.key]
            else:
                first, count = channel, slot.channels
            out[slot.key] = (first, count)
            channel = first + count
        return out


def combine_inputs(legs: Sequence[StreamSlot], has_audio) -> Tuple[List[Tuple[Optional[str], int]],
                                                                   Dict[str, Tuple[int, int]]]:
    """The combiner's inputs, (path or None, start offset) per leg, and the layout.

    A leg without audio keeps its place as a silent channel, so the channel
    order is the same whatever arrived. ``has_audio(slot)`` says whether its
    file holds anything.
    """
    inputs: List[Tuple[Optional[str], int]] = []
    layout: Dict[str, Tuple[int, int]] = {}
    channel = 0
    for slot in legs:
        stats = slot.final_stats()
        if has_audio(slot):
            inputs.append((slot.wav_path, int(stats.get("start_offset_samples") or 0)))
            count = int(stats.get("channels") or slot.channels)
        else:
            inputs.append((None, 0))
            count = 1
        layout[slot.key] = (channel, count)
        channel += count
    return inputs, layout
