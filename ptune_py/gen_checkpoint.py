#!/usr/bin/python3
"""Write a Hugging Face-format T5 checkpoint with seeded random weights.

Real T5 weights cannot be downloaded where ptune is built and tested, so the
tests and benchmarks run on checkpoints made by this tool. A checkpoint is a
directory holding the three files that ptune (and Hugging Face's
T5ForConditionalGeneration) read:

    config.json         the T5Config fields, as Hugging Face writes them
    model.safetensors   every weight, named as in HF's state dict
    spiece.model        the SentencePiece tokenizer

Usage
-----
    ptune_py/gen_checkpoint.py OUT_DIR --preset NAME [--seed 0] [--dtype f32|bf16|f16]
        [--spiece PATH | --train-spiece TEXT_FILE --spiece-vocab N [--spiece-sentences N]]
        [--set key=value ...]

    --preset NAME     architecture to generate (see below).
    --seed N          seed for numpy.random.default_rng; the same seed, preset,
                      dtype, overrides and tokenizer give byte-identical files.
    --dtype           storage type of every tensor: f32 (default), bf16 or f16.
                      Tensors are drawn in float32 and converted; bf16 rounds to
                      nearest even, exactly as torch's float32 -> bfloat16 cast.
    --spiece PATH     copy this SentencePiece model as spiece.model.
    --train-spiece TEXT_FILE --spiece-vocab N
                      train a unigram model of N pieces on TEXT_FILE with
                      spm_train (Debian package "sentencepiece"), using T5's
                      conventions: <pad>=0, </s>=1, <unk>=2, no BOS.
    --spiece-sentences N
                      how many sentences of TEXT_FILE spm_train samples
                      (default 20000, which keeps training to a few seconds;
                      0 = all). The trained model depends only on the text,
                      N and these two settings, not on --seed.
    --set key=value   override (or add) a config.json field; repeatable. The
                      value is read as JSON when it parses as JSON (64, 1e-5,
                      false, null, "x") and as a plain string otherwise
                      (gated-gelu). Tensor shapes follow the final config, e.g.
                          --set d_model=64 --set feed_forward_proj=gated-gelu
                          --set tie_word_embeddings=false
                      dense_act_fn and is_gated_act are re-derived from
                      feed_forward_proj unless they are set explicitly.

With neither --spiece nor --train-spiece, the real T5 tokenizer at
../shared/tokenizers/t5/spiece.model (relative to the repository root) is
copied when it exists.

Examples
--------
    ptune_py/gen_checkpoint.py /tmp/ckpt/tiny-relu --preset tiny-relu
    ptune_py/gen_checkpoint.py /tmp/ckpt/tiny-gated --preset tiny-gated \\
        --train-spiece ../shared/data/corpus/plain.txt --spiece-vocab 1000
    ptune_py/gen_checkpoint.py /tmp/ckpt/flan-t5-large --preset flan-t5-large --dtype bf16

Presets
-------
    name           d_model d_kv heads  d_ff  enc/dec layers  feed_forward  tied  buckets/max_dist
    t5-small           512   64     8  2048     6 / 6        relu          yes   32 / 128
    flan-t5-small      512   64     6  1024     8 / 8        gated-gelu    no    32 / 128
    flan-t5-base       768   64    12  2048    12 / 12       gated-gelu    no    32 / 128
    flan-t5-large     1024   64    16  2816    24 / 24       gated-gelu    no    32 / 128
    tiny-relu           64   16     4   128     2 / 2        relu          yes   32 / 128
    tiny-gated          64   12     3    96     3 / 2        gated-gelu    no    16 / 20
    spam-256           256   32     8  1024     4 / 4        gated-gelu    no    32 / 128

The t5-small and flan-t5-* presets have vocab_size 32128, as the real models.
tiny-gated is deliberately irregular: num_heads * d_kv = 36 != d_model, fewer
decoder than encoder layers, and a max_distance of 20 so that short inputs
already reach the logarithmic relative-position buckets; its
layer_norm_epsilon is 1e-5 (1e-6 elsewhere). For tiny-* and spam-256 the
vocab_size follows the tokenizer: its piece count rounded up to a multiple of
8, except that a 32000-piece tokenizer (the real T5 one) gives 32128 like the
real models.

Tensors
-------
Names and shapes are those of T5ForConditionalGeneration's state dict, 2-D
weights being [out_features, in_features] like nn.Linear. As in real Hugging
Face safetensors files, the tied embedding is stored once, as shared.weight
(no encoder/decoder.embed_tokens.weight), and lm_head.weight is written only
when tie_word_embeddings is false. relative_attention_bias exists in block 0
of each stack only. The header lists names alphabetically; the data follows
in model order, contiguous and unpadded.

Initialisation, and why it deviates from Hugging Face
-----------------------------------------------------
Weights are normal with the standard deviations of HF's
T5PreTrainedModel._init_weights at initializer_factor 1.0:

    shared                    N(0, 1)
    q                         N(0, (d_model * d_kv) ** -0.5)
    k, v                      N(0, d_model ** -0.5)
    o                         N(0, (num_heads * d_kv) ** -0.5)
    wi / wi_0 / wi_1          N(0, d_model ** -0.5)
    wo                        N(0, d_ff ** -0.5)
    relative_attention_bias   N(0, d_model ** -0.5)

with two deliberate changes:

  * Layer norm weights are 1.0 + N(0, 0.05) instead of exactly 1.0. With all
    scales equal to one, code that drops a layer norm weight, applies the
    wrong one (encoder/decoder final norms swapped, off-by-one layer) or
    mis-indexes it would still give the right answer; the noise makes such
    bugs visible in comparisons while keeping activations at normal scale.
  * lm_head is N(0, d_model ** -0.5) instead of N(0, 1). The final layer norm
    leaves hidden states of RMS about 1, so an N(0, 1) head gives logits of
    standard deviation about sqrt(d_model) (~23 for d_model 512): a saturated,
    nearly one-hot softmax with huge losses and degenerate decoding. The
    scaled head gives unit-scale logits, as the tied path does through its
    d_model ** -0.5 rescaling.

All tensors come from one numpy.random.default_rng(seed) stream in a fixed
model order, each drawn in float32 and converted on its own, and written as
soon as it is drawn: the header is computed from the shapes first, so memory
stays at about one tensor even for flan-t5-large (~780M parameters).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SPIECE = REPO_ROOT.parent / "shared" / "tokenizers" / "t5" / "spiece.model"

# The real T5 vocabulary has 32000 pieces; the released models pad the
# embedding to 32128 rows (a multiple of 128) and so do we.
T5_PIECES = 32000
T5_VOCAB_SIZE = 32128

# Fields every generated config.json carries, as HF's T5Config writes them.
BASE_CONFIG = {
    "architectures": ["T5ForConditionalGeneration"],
    "classifier_dropout": 0.0,
    "decoder_start_token_id": 0,
    "dropout_rate": 0.1,
    "eos_token_id": 1,
    "initializer_factor": 1.0,
    "is_encoder_decoder": True,
    "layer_norm_epsilon": 1e-6,
    "model_type": "t5",
    "pad_token_id": 0,
    "relative_attention_max_distance": 128,
    "relative_attention_num_buckets": 32,
    "use_cache": True,
}

# Architecture of each preset. A preset without "vocab_size" takes it from
# the tokenizer (see vocab_size_for).
PRESETS = {
    "t5-small": dict(vocab_size=T5_VOCAB_SIZE, d_model=512, d_kv=64, d_ff=2048,
                     num_layers=6, num_decoder_layers=6, num_heads=8,
                     feed_forward_proj="relu", tie_word_embeddings=True),
    "flan-t5-small": dict(vocab_size=T5_VOCAB_SIZE, d_model=512, d_kv=64, d_ff=1024,
                          num_layers=8, num_decoder_layers=8, num_heads=6,
                          feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "flan-t5-base": dict(vocab_size=T5_VOCAB_SIZE, d_model=768, d_kv=64, d_ff=2048,
                         num_layers=12, num_decoder_layers=12, num_heads=12,
                         feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "flan-t5-large": dict(vocab_size=T5_VOCAB_SIZE, d_model=1024, d_kv=64, d_ff=2816,
                          num_layers=24, num_decoder_layers=24, num_heads=16,
                          feed_forward_proj="gated-gelu", tie_word_embeddings=False),
    "tiny-relu": dict(d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
                      num_heads=4, feed_forward_proj="relu", tie_word_embeddings=True),
    # Irregular on purpose: inner dim 36 != d_model, 3 encoder vs 2 decoder
    # layers, and a small max_distance so long-distance buckets get exercised.
    "tiny-gated": dict(d_model=64, d_kv=12, d_ff=96, num_layers=3, num_decoder_layers=2,
                       num_heads=3, feed_forward_proj="gated-gelu", tie_word_embeddings=False,
                       relative_attention_num_buckets=16, relative_attention_max_distance=20,
                       layer_norm_epsilon=1e-5),
    "spam-256": dict(d_model=256, d_kv=32, d_ff=1024, num_layers=4, num_decoder_layers=4,
                     num_heads=8, feed_forward_proj="gated-gelu", tie_word_embeddings=False),
}

# dtype flag -> (safetensors dtype, config.json torch_dtype, bytes per element)
DTYPES = {
    "f32": ("F32", "float32", 4),
    "bf16": ("BF16", "bfloat16", 2),
    "f16": ("F16", "float16", 2),
}

# Config fields that size tensors; checked before any shape is computed.
SHAPE_FIELDS = ("vocab_size", "d_model", "d_kv", "d_ff", "num_layers", "num_decoder_layers",
                "num_heads", "relative_attention_num_buckets")

LAYER_NORM_NOISE = 0.05


def fail(msg):
    sys.exit(f"gen_checkpoint: {msg}")


def warn(msg):
    print(f"gen_checkpoint: warning: {msg}", file=sys.stderr)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------

def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Write a Hugging Face-format T5 checkpoint (config.json, "
                    "model.safetensors, spiece.model) with seeded random weights.",
        epilog="See the docstring at the top of this script for presets and details.")
    p.add_argument("out_dir", metavar="OUT_DIR", type=Path)
    p.add_argument("--preset", required=True, choices=sorted(PRESETS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--dtype", choices=sorted(DTYPES), default="f32")
    tok = p.add_mutually_exclusive_group()
    tok.add_argument("--spiece", type=Path, metavar="PATH",
                     help="copy this SentencePiece model as spiece.model")
    tok.add_argument("--train-spiece", type=Path, metavar="TEXT_FILE",
                     help="train a unigram SentencePiece model on TEXT_FILE")
    p.add_argument("--spiece-vocab", type=int, metavar="N",
                   help="number of pieces for --train-spiece")
    p.add_argument("--spiece-sentences", type=int, metavar="N", default=20000,
                   help="sentences spm_train samples from TEXT_FILE (default 20000, 0 = all)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config.json field (repeatable)")
    args = p.parse_args(argv)

    if args.train_spiece is not None and args.spiece_vocab is None:
        p.error("--train-spiece needs --spiece-vocab N")
    if args.spiece_vocab is not None and args.train_spiece is None:
        p.error("--spiece-vocab only applies with --train-spiece")
    if args.seed < 0:
        p.error("--seed must be non-negative")
    if args.spiece_sentences < 0:
        p.error("--spiece-sentences must be non-negative")
    args.overrides = parse_overrides(p, args.overrides)
    return args


def parse_overrides(parser, items):
    """Turn ["k=v", ...] into an ordered dict; values are JSON when they parse as JSON."""
    overrides = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            parser.error(f"--set expects key=value, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text  # bare words such as gated-gelu
        overrides[key] = value
    return overrides


# --------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------

def read_varint(buf, pos):
    value = shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        byte = buf[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7


def protobuf_fields(buf):
    """Yield (field number, wire type, value) of a serialized protobuf message.

    Length-delimited values come back as bytes; only the wire types that
    SentencePiece's ModelProto uses are handled."""
    pos = 0
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = read_varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = read_varint(buf, pos)
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > len(buf):
            raise ValueError("truncated field")
        yield field, wire, value


def spiece_pieces(model, origin):
    """Return the piece strings of a serialized SentencePiece model, in id order.

    Parsed directly (ModelProto field 1 = repeated SentencePiece, whose field 1
    is the piece text) so that no sentencepiece Python module is needed."""
    pieces = []
    try:
        for field, wire, value in protobuf_fields(model):
            if field == 1 and wire == 2:
                text = next((v for f, w, v in protobuf_fields(value) if f == 1 and w == 2), b"")
                pieces.append(text.decode("utf-8", "replace"))
    except ValueError as e:
        fail(f"{origin} is not a SentencePiece model: {e}")
    if not pieces:
        fail(f"{origin} has no pieces; is it a SentencePiece model?")
    return pieces


def train_spiece(text_file, vocab, sentences):
    """Train a T5-style unigram SentencePiece model on text_file; return its bytes.

    The output is deterministic: a fixed random seed and thread count (the EM
    result depends on how sentences are split between threads), and spm_train
    runs in a scratch directory on fixed relative names, because the model
    records its --input and --model_prefix arguments in its trainer spec."""
    if not text_file.is_file():
        fail(f"--train-spiece: {text_file} is not a file")
    if shutil.which("spm_train") is None:
        fail("spm_train not found (Debian package 'sentencepiece')")
    with tempfile.TemporaryDirectory(prefix="gen_checkpoint.") as tmp:
        os.symlink(text_file.resolve(), os.path.join(tmp, "input.txt"))
        cmd = [
            "spm_train", "--input=input.txt", "--model_prefix=spiece",
            f"--vocab_size={vocab}", "--model_type=unigram", "--character_coverage=1.0",
            "--pad_id=0", "--eos_id=1", "--unk_id=2", "--bos_id=-1",
            f"--input_sentence_size={sentences}", "--shuffle_input_sentence=true",
            # the unigram trainer prunes the seed set down to vocab pieces; a
            # seed ~10x the target is plenty and much faster than the 1M default
            f"--seed_sentencepiece_size={max(10 * vocab, 10000)}",
            "--random_seed=0", "--num_threads=2", "--minloglevel=2",
        ]
        proc = subprocess.run(cmd, cwd=tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, errors="replace")
        if proc.returncode != 0:
            tail = "\n".join(proc.stdout.strip().splitlines()[-10:])
            fail(f"spm_train failed (exit {proc.returncode}):\n{tail}")
        return Path(tmp, "spiece.model").read_bytes()


def load_tokenizer(args):
    """Copy or train the tokenizer; return (serialized model, piece list).

    Held in memory (it is at most a few MB) so that a bad tokenizer is
    rejected before anything is written to the output directory."""
    if args.train_spiece is not None:
        origin = f"the model trained on {args.train_spiece}"
        model = train_spiece(args.train_spiece, args.spiece_vocab, args.spiece_sentences)
    else:
        src = args.spiece
        if src is None:
            if not DEFAULT_SPIECE.is_file():
                fail(f"no tokenizer: {DEFAULT_SPIECE} does not exist; pass --spiece PATH "
                     "or --train-spiece TEXT_FILE --spiece-vocab N")
            src = DEFAULT_SPIECE
        if not src.is_file():
            fail(f"--spiece: {src} is not a file")
        origin = str(src)
        model = src.read_bytes()
    pieces = spiece_pieces(model, origin)
    if pieces[:3] != ["<pad>", "</s>", "<unk>"]:
        warn(f"tokenizer ids 0-2 are {pieces[:3]}, not T5's <pad>, </s>, <unk>")
    return model, pieces


# --------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------

def vocab_size_for(n_pieces):
    """Embedding rows for a tokenizer: 32128 for T5's own, else a multiple of 8."""
    if n_pieces == T5_PIECES:
        return T5_VOCAB_SIZE
    return (n_pieces + 7) // 8 * 8


def activation_fields(feed_forward_proj):
    """dense_act_fn and is_gated_act, derived exactly as T5Config.__init__ does."""
    parts = str(feed_forward_proj).split("-")
    act = parts[-1]
    gated = parts[0] == "gated"
    if len(parts) > 2 or (len(parts) == 2 and not gated):
        fail(f"feed_forward_proj {feed_forward_proj!r} is not 'ACT' or 'gated-ACT'")
    if feed_forward_proj == "gated-gelu":
        act = "gelu_new"  # HF keeps this mapping for backwards compatibility
    return {"dense_act_fn": act, "is_gated_act": gated}


def build_config(args, n_pieces):
    preset = PRESETS[args.preset]
    cfg = dict(BASE_CONFIG)
    cfg.update(preset)
    if "vocab_size" not in preset:
        cfg["vocab_size"] = vocab_size_for(n_pieces)
    cfg["_name_or_path"] = f"ptune-generated/{args.preset}"
    cfg["torch_dtype"] = DTYPES[args.dtype][1]
    cfg.update(args.overrides)
    # derived after the overrides, so --set feed_forward_proj=... stays coherent
    for key, value in activation_fields(cfg["feed_forward_proj"]).items():
        if key not in args.overrides:
            cfg[key] = value
    cfg["ptune_generator"] = {
        "preset": args.preset,
        "seed": args.seed,
        "dtype": args.dtype,
        "overrides": args.overrides,
    }

    for key in SHAPE_FIELDS:
        if not isinstance(cfg.get(key), int) or isinstance(cfg[key], bool) or cfg[key] < 1:
            fail(f"config field {key} must be a positive integer, got {cfg.get(key)!r}")
    if not isinstance(cfg.get("tie_word_embeddings"), bool):
        fail(f"tie_word_embeddings must be true or false, got {cfg.get('tie_word_embeddings')!r}")
    if cfg["vocab_size"] < n_pieces:
        warn(f"vocab_size {cfg['vocab_size']} is smaller than the tokenizer's {n_pieces} pieces")
    return cfg


def write_config(cfg, path):
    # sorted keys and 2-space indent, like transformers' to_json_file
    path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------
# Tensor plan: names, shapes and initial distributions, in model order
# --------------------------------------------------------------------------

def normal(std):
    return ("normal", std)


def layer_norm():
    return ("layer_norm", LAYER_NORM_NOISE)


def tensor_plan(cfg):
    """List (name, shape, init) in the fixed order tensors are drawn and written."""
    d, kv, heads = cfg["d_model"], cfg["d_kv"], cfg["num_heads"]
    inner, ff, vocab = heads * kv, cfg["d_ff"], cfg["vocab_size"]
    buckets = cfg["relative_attention_num_buckets"]
    gated = bool(cfg["is_gated_act"])
    plan = [("shared.weight", (vocab, d), normal(1.0))]

    def attention(prefix, with_bias):
        out = [
            (f"{prefix}.q.weight", (inner, d), normal((d * kv) ** -0.5)),
            (f"{prefix}.k.weight", (inner, d), normal(d ** -0.5)),
            (f"{prefix}.v.weight", (inner, d), normal(d ** -0.5)),
            (f"{prefix}.o.weight", (d, inner), normal(inner ** -0.5)),
        ]
        if with_bias:
            out.append((f"{prefix}.relative_attention_bias.weight", (buckets, heads),
                        normal(d ** -0.5)))
        return out

    def feed_forward(prefix):
        wi = ["wi_0", "wi_1"] if gated else ["wi"]
        out = [(f"{prefix}.{w}.weight", (ff, d), normal(d ** -0.5)) for w in wi]
        out.append((f"{prefix}.wo.weight", (d, ff), normal(ff ** -0.5)))
        return out

    for i in range(cfg["num_layers"]):
        block = f"encoder.block.{i}.layer"
        plan += attention(f"{block}.0.SelfAttention", with_bias=(i == 0))
        plan.append((f"{block}.0.layer_norm.weight", (d,), layer_norm()))
        plan += feed_forward(f"{block}.1.DenseReluDense")
        plan.append((f"{block}.1.layer_norm.weight", (d,), layer_norm()))
    plan.append(("encoder.final_layer_norm.weight", (d,), layer_norm()))

    for i in range(cfg["num_decoder_layers"]):
        block = f"decoder.block.{i}.layer"
        plan += attention(f"{block}.0.SelfAttention", with_bias=(i == 0))
        plan.append((f"{block}.0.layer_norm.weight", (d,), layer_norm()))
        plan += attention(f"{block}.1.EncDecAttention", with_bias=False)
        plan.append((f"{block}.1.layer_norm.weight", (d,), layer_norm()))
        plan += feed_forward(f"{block}.2.DenseReluDense")
        plan.append((f"{block}.2.layer_norm.weight", (d,), layer_norm()))
    plan.append(("decoder.final_layer_norm.weight", (d,), layer_norm()))

    if not cfg["tie_word_embeddings"]:
        plan.append(("lm_head.weight", (vocab, d), normal(d ** -0.5)))
    return plan


# --------------------------------------------------------------------------
# Drawing and converting tensors
# --------------------------------------------------------------------------

def draw(rng, shape, init):
    """Draw one float32 tensor; in-place arithmetic keeps it to a single copy."""
    kind, std = init
    x = rng.standard_normal(shape, dtype=np.float32)
    x *= np.float32(std)
    if kind == "layer_norm":
        x += np.float32(1.0)
    return x


def to_bf16(x):
    """float32 -> bfloat16 bits, round to nearest even (torch's cast).

    Works in place on x's bits. The uint32 sum can only wrap for bit patterns
    of negative NaNs, which normal draws never produce."""
    bits = x.view(np.uint32)
    lsb = bits >> 16
    lsb &= 1
    lsb += 0x7FFF
    bits += lsb
    bits >>= 16
    return bits.astype("<u2")


def encode(x, dtype):
    """Convert a float32 tensor to the little-endian storage layout of dtype."""
    if dtype == "f32":
        return x.astype("<f4", copy=False)
    if dtype == "bf16":
        return to_bf16(x)
    return x.astype("<f2")


# --------------------------------------------------------------------------
# safetensors
# --------------------------------------------------------------------------

def safetensors_header(plan, dtype):
    """Header bytes (length prefix + space-padded JSON) for tensors stored in plan order."""
    st_dtype, _, size = DTYPES[dtype]
    entries = {}
    offset = 0
    for name, shape, _ in plan:
        nbytes = int(np.prod(shape, dtype=np.int64)) * size
        entries[name] = {"dtype": st_dtype, "shape": list(shape),
                         "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    header = {"__metadata__": {"format": "pt"}}
    header.update(sorted(entries.items()))
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-(8 + len(text)) % 8)  # data starts 8-byte aligned
    return len(text).to_bytes(8, "little") + text, offset


def write_safetensors(path, plan, dtype, seed):
    """Draw every tensor of plan from default_rng(seed) and stream it to path.

    Written under a temporary name and renamed, so an interrupted run never
    leaves a truncated model.safetensors behind. Returns the file size."""
    rng = np.random.default_rng(seed)
    header, data_bytes = safetensors_header(plan, dtype)
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            for _, shape, init in plan:
                f.write(memoryview(np.ascontiguousarray(encode(draw(rng, shape, init), dtype))))
        size = tmp.stat().st_size
        if size != len(header) + data_bytes:
            fail(f"internal error: wrote {size} bytes, expected {len(header) + data_bytes}")
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return size


# --------------------------------------------------------------------------

def main(argv=None):
    args = parse_args(argv)
    start = time.monotonic()
    out = args.out_dir
    spiece, pieces = load_tokenizer(args)
    cfg = build_config(args, len(pieces))
    plan = tensor_plan(cfg)

    try:
        out.mkdir(parents=True, exist_ok=True)
        (out / "spiece.model").write_bytes(spiece)
        write_config(cfg, out / "config.json")
        size = write_safetensors(out / "model.safetensors", plan, args.dtype, args.seed)
    except OSError as e:
        fail(f"cannot write to {out}: {e}")

    params = sum(int(np.prod(shape, dtype=np.int64)) for _, shape, _ in plan)
    print(f"{out}: {args.preset} {args.dtype} seed {args.seed}, {params} parameters, "
          f"{size} bytes, vocab {cfg['vocab_size']} ({len(pieces)} pieces), "
          f"{time.monotonic() - start:.2f} s")


if __name__ == "__main__":
    main()
