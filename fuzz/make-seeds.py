#!/usr/bin/env python3
"""Writes the fuzz targets' hand-made seeds into fuzz/seeds/<target>/ (small, deterministic).

The JSON, WAV and Ogg/Opus targets are seeded from the repository's own fixtures instead
(scripts/fuzz passes those directories); these are the binary protocols with no fixture file.
Run from anywhere: python3 fuzz/make-seeds.py
"""
import json, os, struct

HERE = os.path.dirname(os.path.abspath(__file__))


def write(target, name, data):
    d = os.path.join(HERE, "seeds", target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def rtp(seq, ts, ssrc, payload, pt=111, marker=False, csrcs=(), ext=None, padding=0):
    b0 = 0x80 | (0x20 if padding else 0) | (0x10 if ext else 0) | len(csrcs)
    out = struct.pack("!BBHII", b0, (0x80 if marker else 0) | pt, seq, ts, ssrc)
    for c in csrcs:
        out += struct.pack("!I", c)
    if ext:
        profile, body = ext
        body += b"\0" * (-len(body) % 4)
        out += struct.pack("!HH", profile, len(body) // 4) + body
    out += payload
    if padding:
        out += b"\0" * (padding - 1) + bytes([padding])
    return out


# RTP: plain Opus, audio level (one-byte form, id 1), two-byte form, CSRCs, padding.
opus_frame = bytes([0x78]) + bytes(range(40))
write("rtp", "plain", rtp(1, 960, 0x1234, opus_frame))
write("rtp", "audio-level", rtp(2, 1920, 0x1234, opus_frame, marker=True, ext=(0xBEDE, bytes([0x10, 0x85]))))
write("rtp", "two-byte-ext", rtp(3, 2880, 0x1234, opus_frame, ext=(0x1000, bytes([1, 2, 0xAA, 0xBB, 2, 0]))))
write("rtp", "csrcs-padding", rtp(4, 3840, 0x1234, opus_frame, csrcs=(7, 8, 9), padding=4))
write("rtp", "telephone-event", rtp(5, 3840, 0x1234, bytes([1, 0x8A, 0x03, 0x20]), pt=101))

# RTCP: sender report with one block, receiver report, BYE, compound RR+SDES+BYE.
def report_block(ssrc, fraction, lost, highest, jitter, lsr, dlsr):
    return struct.pack("!IB", ssrc, fraction) + lost.to_bytes(3, "big") + struct.pack("!IIII", highest, jitter, lsr, dlsr)

block = report_block(0x1234, 25, 3, 1000, 12, 0x12345678, 0x00010000)
sr = struct.pack("!BBHIIIIII", 0x81, 200, 12, 0x5678, 0xE0000000, 0, 960, 10, 1000) + block
rr = struct.pack("!BBHI", 0x81, 201, 7, 0x5678) + block
bye = struct.pack("!BBHI", 0x81, 203, 1, 0x5678)
sdes = struct.pack("!BBHI", 0x81, 202, 3, 0x5678) + bytes([1, 2, ord("a"), ord("b"), 0, 0])
ssrcs = struct.pack("!II", 0x1234, 0x5678)  # the target's local and remote SSRCs
write("rtcp", "sender-report", ssrcs + sr)
write("rtcp", "receiver-report", ssrcs + rr)
write("rtcp", "bye", ssrcs + bye)
write("rtcp", "compound", ssrcs + rr + sdes + bye)
write("rtcp", "stun-binding", ssrcs + struct.pack("!HHI", 1, 0, 0x2112A442) + bytes(12))

# Jitter: 8-byte records (flags, seq step + 1, ts step, arrival ms, len, fill, marker):
# a steady stream, then reordering, a loss, a late packet, a big timestamp jump, an SSRC change.
steady = b"".join(bytes([0, 2, 0x03, 0xC0, 20, 60, i, 0]) for i in range(50))
wobbly = b"".join(bytes([0, s, 0x03, 0xC0, a, 60, 7, 0]) for s, a in
                  [(2, 20), (3, 5), (0, 40), (2, 0), (4, 60), (2, 20), (200, 20), (2, 20)])
jump = bytes([0, 2, 0xFF, 0xFF, 20, 60, 1, 1]) + bytes([0x40, 2, 0x03, 0xC0, 20, 60, 1, 1])
write("jitter", "steady", steady)
write("jitter", "reordered-lost-late", steady + wobbly)
write("jitter", "jump-and-new-ssrc", steady[:80] + jump + steady[:80])

# DTMF: 8-byte records (SSRC selector, timestamp step, arrival ms, 4-byte event, 1 spare):
# key 5 held 3 packets with its end sent three times, then key # whose end is lost.
def event(code, end, duration):
    return bytes([code, (0x80 if end else 0) | 10]) + struct.pack("!H", duration)

keys = b"".join(bytes([0, 0, 20]) + event(5, False, d) + b"\0" for d in (160, 320, 480))
keys += b"".join(bytes([0, 0, 20]) + event(5, True, 640) + b"\0" for _ in range(3))
keys += b"".join(bytes([0, 1 if i == 0 else 0, 20]) + event(11, False, 160 * (i + 1)) + b"\0" for i in range(3))
write("dtmf", "keys", keys)

# Blob content (no integrity member; the target seals it itself) with a browser-like offer.
sdp = "\r\n".join([
    "v=0", "o=- 4611731400430051336 2 IN IP4 127.0.0.1", "s=-", "t=0 0",
    "a=group:BUNDLE 0", "a=msid-semantic: WMS",
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 101", "c=IN IP4 0.0.0.0", "a=rtcp:9 IN IP4 0.0.0.0",
    "a=candidate:1 1 udp 2122260223 127.0.0.1 50000 typ host",
    "a=ice-ufrag:abcd", "a=ice-pwd:abcdefghijklmnopqrstuvwx", "a=ice-options:trickle",
    "a=fingerprint:sha-256 " + ":".join(["AB"] * 32), "a=setup:actpass", "a=mid:0",
    "a=extmap:1 urn:ietf:params:rtp-hdrext:ssrc-audio-level", "a=sendrecv", "a=rtcp-mux",
    "a=rtpmap:111 opus/48000/2", "a=fmtp:111 minptime=10;useinbandfec=1",
    "a=rtpmap:101 telephone-event/48000", "a=ssrc:1 cname:x", "",
])
blob = {
    "version": 1, "mpMediaSessionId": "0b6b0b8e-0000-4000-8000-000000000001",
    "supportedAudioFormat": "Pcm16K", "audioSourceContexts": ["1"], "audioRenderContexts": ["2"],
    "receiveUnmixedMeetingAudio": False, "webrtc": {"type": "offer", "sdp": sdp},
}
write("blob_sdp", "blob-content.json", json.dumps(blob).encode())
write("blob_sdp", "offer.sdp", sdp.encode())


# demux: register two sessions, claim an address, route a Binding request for each ufrag, an
# RTP packet from the claimed address, then remove one and route again.
def stun_request(username):
    attr = struct.pack("!HH", 0x0006, len(username)) + username + b"\0" * (-len(username) % 4)
    return struct.pack("!HHI", 0x0001, len(attr), 0x2112A442) + bytes(12) + attr


def record(op, who, body):
    return bytes([op, who, len(body)]) + body


demux = (
    record(0, 1, b"frag1")
    + record(0, 2, b"frag2")
    + record(1, 1 | (3 << 3), b"")
    + record(3, 1 | (9 << 3), stun_request(b"frag1:peer"))
    + record(3, 2 | (9 << 3), stun_request(b"frag2:peer"))
    + record(3, 1 | (3 << 3), rtp(1, 960, 0x1234, opus_frame))
    + record(2, 1, b"")
    + record(3, 1 | (3 << 3), rtp(2, 1920, 0x1234, opus_frame))
)
write("demux", "two-sessions", demux)


# follow: the stack talks to address 1; the peer checks from address 2, the stack answers,
# media from 2 after 600 ms of silence moves the session; the stack's sends are translated.
def follow_record(op, who, ms, body):
    return bytes([op, who, ms, len(body)]) + body


def stun(kind, txid):
    return struct.pack("!HHI", kind, 0, 0x2112A442) + bytes([txid] * 12)


media = rtp(1, 960, 0x1234, opus_frame)
follow = (
    follow_record(1, 1, 0, media)
    + follow_record(0, 1, 1, media)
    + follow_record(0, 2, 75, stun(0x0001, 7))
    + follow_record(1, 2, 0, stun(0x0101, 7))
    + follow_record(0, 2, 1, media)
    + follow_record(1, 1, 1, media)
    + follow_record(0, 1, 75, stun(0x0001, 8))
    + follow_record(1, 1, 0, stun(0x0101, 8))
    + follow_record(0, 1, 1, media)
)
write("follow", "move-and-back", follow)
