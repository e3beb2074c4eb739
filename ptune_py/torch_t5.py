#!/usr/bin/python3
"""An efficient float32 PyTorch T5 (encoder-decoder) with a soft prompt, for benchmarks.

This is the model a competent PyTorch user would write to prompt-tune a frozen
Hugging Face T5 checkpoint without the transformers package: batched tensor
ops (nn.functional.linear with the weight matrices, torch.matmul attention
over [B, H, T, T] scores, padding masks added as large negative numbers),
float32 throughout, every weight frozen (requires_grad False) so that autograd
only differentiates with respect to the soft prompt.  bench/
pytorch_prompt_tuning.py uses it for a side-by-side comparison with
`ptune train`; ptune_py/t5_reference.py (float64, one sequence at a
time) is the oracle it was validated against.

T5 details (HF modeling_t5.py, eval mode):
  - RMSNorm: x * rsqrt(mean(x^2) + eps) * w (no mean subtraction, no bias);
  - attention scores are NOT scaled by 1/sqrt(d_kv);
  - relative position bias from block 0 of each stack, reused by every layer:
    bidirectional buckets in the encoder, causal ones in decoder
    self-attention, none in cross-attention;
  - feed-forward wo(act(wi x)) or gated wo(act(wi_0 x) * wi_1 x), with
    gated-gelu meaning the tanh approximation of gelu;
  - the final decoder state is multiplied by d_model**-0.5 when the word
    embeddings are tied to the lm head.
A soft prompt [P, d] is prepended to the embedded encoder input: its rows are
always attended and simply occupy the first P positions, so they take part in
the relative positions like tokens.

Importing this module sets OPENBLAS_CORETYPE (when not already set) before
torch is imported: Debian's OpenBLAS does not recognise recent CPUs and would
otherwise fall back to slow generic kernels.  Import it before torch.

Usage:
    import torch_t5
    m = torch_t5.T5("/path/to/checkpoint")
    enc, enc_mask = m.encode(ids, mask, prompt)        # [B, P+T, d], [B, P+T]
    h = m.decode(dec_ids, enc, enc_mask)               # [B, Td, d]
    logits = m.logits(h)                               # [B, Td, V]
    some = m.token_logits(h, torch.tensor([ids...]))   # [B, Td, K]
    ids, lps = m.generate_greedy(enc, enc_mask, 32)    # cached greedy decoding
"""
import os
import sys


def _openblas_coretype():
    """OpenBLAS kernel family for this CPU: SkylakeX with AVX-512, Haswell with AVX2+FMA."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
            else:
                return None
    except OSError:
        return None
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "SkylakeX"
    if {"avx2", "fma"} <= flags:
        return "Haswell"
    return None


_core = _openblas_coretype()
if _core:
    os.environ.setdefault("OPENBLAS_CORETYPE", _core)

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from ptune_py import t5_reference  # noqa: E402
from ptune_py.t5_reference import _relative_position_bucket, load_config  # noqa: E402,F401

NEG = -1e9          # added to the scores of masked keys: exp underflows to exactly 0


# ------------------------------------------------- loading, position buckets
# The checkpoint and config readers and HF's bucket function are the
# reference implementation's (ptune_py/t5_reference.py), read in float32.

def load_safetensors(path):
    """{name: float32 tensor} from a .safetensors file holding F32, BF16 or F16 tensors."""
    return t5_reference.load_safetensors(path, np.float32)


# ---------------------------------------------------------------- the model

class T5:
    """A frozen float32 T5ForConditionalGeneration (eval mode, no dropout)."""

    def __init__(self, model_dir):
        cfg = self.cfg = load_config(model_dir)
        w = load_safetensors(os.path.join(model_dir, "model.safetensors"))
        self.d_model = cfg["d_model"]
        self.H, self.dk = cfg["num_heads"], cfg["d_kv"]
        self.inner = self.H * self.dk
        self.eps = cfg["eps"]
        self.embed = w.get("shared.weight", w.get("encoder.embed_tokens.weight"))
        if self.embed is None:
            raise ValueError("%s has no shared.weight" % model_dir)
        self.head = self.embed if cfg["tied"] else w["lm_head.weight"]      # [V, d]
        self.head_scale = cfg["d_model"] ** -0.5 if cfg["tied"] else 1.0
        self.enc_rel = w["encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        self.dec_rel = w["decoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        self.enc_final = w["encoder.final_layer_norm.weight"]
        self.dec_final = w["decoder.final_layer_norm.weight"]

        def ff(prefix):
            if cfg["gated"]:   # one matmul for both input projections
                wi = torch.cat([w[prefix + ".wi_0.weight"], w[prefix + ".wi_1.weight"]], 0)
            else:
                wi = w[prefix + ".wi.weight"]
            return wi, w[prefix + ".wo.weight"]

        def qkv(prefix):
            return torch.cat([w[prefix + ".q.weight"], w[prefix + ".k.weight"], w[prefix + ".v.weight"]], 0)

        # per layer: (ln_attn, Wqkv, Wo, ln_ff, Wi, Wo_ff) and for the decoder the cross-attention too
        self.enc_layers = []
        for i in range(cfg["num_layers"]):
            p = "encoder.block.%d.layer." % i
            self.enc_layers.append({
                "ln0": w[p + "0.layer_norm.weight"],
                "qkv": qkv(p + "0.SelfAttention"),
                "o": w[p + "0.SelfAttention.o.weight"],
                "ln1": w[p + "1.layer_norm.weight"],
                "ff": ff(p + "1.DenseReluDense"),
            })
        self.dec_layers = []
        for i in range(cfg["num_decoder_layers"]):
            p = "decoder.block.%d.layer." % i
            c = p + "1.EncDecAttention"
            self.dec_layers.append({
                "ln0": w[p + "0.layer_norm.weight"],
                "qkv": qkv(p + "0.SelfAttention"),
                "o": w[p + "0.SelfAttention.o.weight"],
                "ln1": w[p + "1.layer_norm.weight"],
                "xq": w[c + ".q.weight"],
                "xkv": torch.cat([w[c + ".k.weight"], w[c + ".v.weight"]], 0),
                "xo": w[c + ".o.weight"],
                "ln2": w[p + "2.layer_norm.weight"],
                "ff": ff(p + "2.DenseReluDense"),
            })
        for t in self._all_weights():
            t.requires_grad_(False)
        self._bias_cache = {}

    def _all_weights(self):
        yield from (self.embed, self.head, self.enc_rel, self.dec_rel, self.enc_final, self.dec_final)
        for layer in self.enc_layers + self.dec_layers:
            for v in layer.values():
                yield from (v if isinstance(v, tuple) else (v,))

    # ------------------------------------------------------------ pieces

    def _norm(self, x, weight):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * weight

    def _act(self, x):
        a = self.cfg["act"]
        if a == "relu":
            return F.relu(x)
        if a == "gelu_new":
            return F.gelu(x, approximate="tanh")
        if a == "gelu":
            return F.gelu(x)
        if a == "silu":
            return F.silu(x)
        raise ValueError("unsupported activation " + a)

    def _ff(self, x, weights):
        wi, wo = weights
        h = F.linear(x, wi)
        if self.cfg["gated"]:
            a, b = h.chunk(2, dim=-1)
            h = self._act(a) * b
        else:
            h = self._act(h)
        return F.linear(h, wo)

    def _heads(self, x):
        """[B, T, H*dk] -> [B, H, T, dk]"""
        B, T, _ = x.shape
        return x.view(B, T, self.H, self.dk).transpose(1, 2)

    def _attend(self, q, k, v, bias):
        """q [B,H,Tq,dk], k/v [B,H,Tk,dk], bias broadcastable to [B,H,Tq,Tk] -> [B,Tq,H*dk]"""
        scores = torch.matmul(q, k.transpose(-1, -2)) + bias           # no 1/sqrt(d_kv) in T5
        ctx = torch.matmul(torch.softmax(scores, dim=-1), v)
        B, _, Tq, _ = ctx.shape
        return ctx.transpose(1, 2).reshape(B, Tq, self.inner)

    def _self_attention(self, x, layer, bias):
        q, k, v = F.linear(x, layer["qkv"]).split(self.inner, dim=-1)
        ctx = self._attend(self._heads(q), self._heads(k), self._heads(v), bias)
        return F.linear(ctx, layer["o"])

    def position_bias(self, q_len, k_len, bidirectional):
        """Relative position bias [1, H, q_len, k_len] (relative = key - query), cached."""
        key = (q_len, k_len, bidirectional)
        bias = self._bias_cache.get(key)
        if bias is None:
            rel = torch.arange(k_len)[None, :] - torch.arange(q_len)[:, None]
            buckets = _relative_position_bucket(rel, bidirectional, self.cfg["num_buckets"],
                                                self.cfg["max_distance"])
            table = self.enc_rel if bidirectional else self.dec_rel
            bias = table[buckets].permute(2, 0, 1).unsqueeze(0).contiguous()
            if not bidirectional:
                causal = torch.ones(q_len, k_len, dtype=torch.bool).tril(k_len - q_len)
                bias = bias.masked_fill(~causal, NEG)
            self._bias_cache[key] = bias
        return bias

    # ------------------------------------------------------------ API

    def embed_ids(self, ids):
        return F.embedding(ids, self.embed)

    def encode(self, input_ids, attention_mask, prompt=None):
        """input_ids [B, T] (padded), attention_mask [B, T] (1 = token), prompt [P, d] or None
        -> (final normed encoder output [B, P+T, d], extended mask [B, P+T])."""
        h = self.embed_ids(input_ids)
        mask = attention_mask.to(torch.bool)
        if prompt is not None:
            B, P = input_ids.shape[0], prompt.shape[0]
            h = torch.cat([prompt.unsqueeze(0).expand(B, -1, -1), h], dim=1)
            mask = torch.cat([torch.ones(B, P, dtype=torch.bool), mask], dim=1)
        T = h.shape[1]
        # position bias + key padding, [B, H, T, T], shared by all layers
        bias = self.position_bias(T, T, True) + self.mask_bias(mask)
        for layer in self.enc_layers:
            h = h + self._self_attention(self._norm(h, layer["ln0"]), layer, bias)
            h = h + self._ff(self._norm(h, layer["ln1"]), layer["ff"])
        return self._norm(h, self.enc_final), mask

    @staticmethod
    def mask_bias(mask):
        """[B, T] bool key mask -> additive [B, 1, 1, T]"""
        return torch.zeros(mask.shape, dtype=torch.float32).masked_fill_(~mask, NEG)[:, None, None, :]

    def decode(self, decoder_input_ids, encoder_out, encoder_mask):
        """decoder_input_ids [B, Td] (teacher forcing; trailing padding is harmless under the
        causal mask), encoder_out [B, S, d], encoder_mask [B, S]
        -> final decoder states [B, Td, d], scaled by d_model**-0.5 when the head is tied."""
        h = self.embed_ids(decoder_input_ids)
        Td = h.shape[1]
        self_bias = self.position_bias(Td, Td, False)
        cross_bias = self.mask_bias(encoder_mask)
        for layer in self.dec_layers:
            h = h + self._self_attention(self._norm(h, layer["ln0"]), layer, self_bias)
            q = self._heads(F.linear(self._norm(h, layer["ln1"]), layer["xq"]))
            k, v = F.linear(encoder_out, layer["xkv"]).split(self.inner, dim=-1)
            ctx = self._attend(q, self._heads(k), self._heads(v), cross_bias)
            h = h + F.linear(ctx, layer["xo"])
            h = h + self._ff(self._norm(h, layer["ln2"]), layer["ff"])
        h = self._norm(h, self.dec_final)
        return h * self.head_scale if self.head_scale != 1.0 else h

    def generate_greedy(self, encoder_out, encoder_mask, max_new, ignore_eos=False):
        """Greedy decoding as a competent user writes it: each step feeds one token per row
        through the decoder, with a self-attention key/value cache (preallocated
        [B, H, max_new, dk] per layer) and the cross-attention keys/values computed once
        per layer.  Also the log-softmax normaliser of every step (for scores), as ptune
        computes.  Rows that produced EOS stay in the batch (padding) until all have;
        ignore_eos decodes exactly max_new tokens (benchmarks).
        encoder_out [B, S, d], encoder_mask [B, S] -> (ids [B, n], log-probs [B, n])."""
        B = encoder_out.shape[0]
        cross = []
        for layer in self.dec_layers:
            k, v = F.linear(encoder_out, layer["xkv"]).split(self.inner, dim=-1)
            cross.append((self._heads(k), self._heads(v)))
        cross_bias = self.mask_bias(encoder_mask)
        self_bias = self.position_bias(max_new, max_new, False)            # [1, H, max_new, max_new]
        cache = [(torch.empty(B, self.H, max_new, self.dk), torch.empty(B, self.H, max_new, self.dk))
                 for _ in self.dec_layers]
        tok = torch.full((B, 1), self.cfg["start_id"], dtype=torch.long)
        done = torch.zeros(B, dtype=torch.bool)
        ids, lps = [], []
        for t in range(max_new):
            h = self.embed_ids(tok)                                         # [B, 1, d]
            for layer, (ck, cv), (xk, xv) in zip(self.dec_layers, cache, cross):
                q, k, v = F.linear(self._norm(h, layer["ln0"]), layer["qkv"]).split(self.inner, dim=-1)
                ck[:, :, t:t + 1] = self._heads(k)
                cv[:, :, t:t + 1] = self._heads(v)
                ctx = self._attend(self._heads(q), ck[:, :, :t + 1], cv[:, :, :t + 1],
                                   self_bias[:, :, t:t + 1, :t + 1])
                h = h + F.linear(ctx, layer["o"])
                q = self._heads(F.linear(self._norm(h, layer["ln1"]), layer["xq"]))
                h = h + F.linear(self._attend(q, xk, xv, cross_bias), layer["xo"])
                h = h + self._ff(self._norm(h, layer["ln2"]), layer["ff"])
            h = self._norm(h, self.dec_final)
            logits = self.logits(h[:, 0] * self.head_scale if self.head_scale != 1.0 else h[:, 0])
            best = logits.argmax(-1)
            lps.append(logits.gather(1, best[:, None])[:, 0] - torch.logsumexp(logits, -1))
            ids.append(best)
            tok = best[:, None]
            if not ignore_eos:
                done |= best == self.cfg["eos_id"]
                if bool(done.all()):
                    break
        return torch.stack(ids, 1), torch.stack(lps, 1)

    def logits(self, h):
        """[..., d] -> full-vocabulary logits [..., V]"""
        return F.linear(h, self.head)

    def token_logits(self, h, ids):
        """[..., d], ids [K] -> the logits of just those vocabulary rows [..., K]"""
        return F.linear(h, self.head[ids])

    def loss(self, input_ids, attention_mask, prompt, decoder_input_ids, targets, ignore_index=-100):
        """Mean cross-entropy over all target tokens of the batch (entries == ignore_index are
        padding), full vocabulary, teacher forcing."""
        enc, mask = self.encode(input_ids, attention_mask, prompt)
        logits = self.logits(self.decode(decoder_input_ids, enc, mask))
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                               ignore_index=ignore_index)
