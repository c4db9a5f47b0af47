"""What the streams of a .gsz file are: the channel codec's id, the attribute each kind of
stream holds (from the attribute codecs' registry), the other streams, and the metadata's
format name. Shared by the encoder, the decoder, the bitrate report and ``gscodec info``."""

from __future__ import annotations

from .codec.attributes import REGISTRY, ImportanceCodec

CODEC_CHANNELS_V1 = 1
VERSION_MINOR_TRANSFORM = 3  # files with a codec-2 SHRS stream (GSZ.md 6.6a)


ATTRIBUTE_OF_KIND = {codec.kind: name for name, codec in REGISTRY.items()}


OTHER_STREAMS = {"META": "metadata", "SIDE": "side information", "IMPC": "importance classes",
                 "CTAB": "chunk table", "CHNK": "chunks", "BASE": "base layer (.spz file)"}


IMPORTANCE = ImportanceCodec()


FORMAT_NAME = "gsz"

CODEC_OF_KIND = {**{codec.kind: codec for codec in REGISTRY.values()}, IMPORTANCE.kind: IMPORTANCE}
"""Stream kind -> the codec that writes and reads it (the channel-coded streams)."""
