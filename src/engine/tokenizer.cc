/*
 * tokenizer.cc - the C-callable shim over sentencepiece (see tokenizer.h).
 *
 * Only this file is C++.  No exception may cross into C: every entry point
 * catches everything and reports it with pt_fail().
 */
#include <algorithm>
#include <cstring>
#include <string>
#include <vector>

#include <sentencepiece_processor.h>

extern "C"
{
#include "error.h"
#include "tokenizer.h"
}

struct PtTokenizer
{
	sentencepiece::SentencePieceProcessor sp;
};

extern "C" PtTokenizer *
pt_tokenizer_load(const void *model_bytes, size_t size, const char *path_for_errors)
{
	try
	{
		PtTokenizer *tok = new PtTokenizer;
		auto		status = tok->sp.LoadFromSerializedProto(
			absl::string_view(static_cast<const char *>(model_bytes), size));

		if (!status.ok())
		{
			pt_fail(PT_ERR_FORMAT, "%s: not a valid sentencepiece model: %s",
					path_for_errors, status.ToString().c_str());
			delete tok;
			return nullptr;
		}
		return tok;
	}
	catch (const std::exception &e)
	{
		pt_fail(PT_ERR_FORMAT, "%s: could not load sentencepiece model: %s", path_for_errors, e.what());
		return nullptr;
	}
	catch (...)
	{
		pt_fail(PT_ERR_FORMAT, "%s: could not load sentencepiece model", path_for_errors);
		return nullptr;
	}
}

extern "C" void
pt_tokenizer_free(PtTokenizer *tok)
{
	delete tok;
}

extern "C" int
pt_tokenizer_vocab_size(const PtTokenizer *tok)
{
	return tok->sp.GetPieceSize();
}

extern "C" const char *
pt_tokenizer_piece(const PtTokenizer *tok, int id)
{
	if (id < 0 || id >= tok->sp.GetPieceSize())
		return "";
	return tok->sp.IdToPiece(id).c_str();
}

extern "C" int
pt_tokenizer_is_special(const PtTokenizer *tok, int id)
{
	if (id < 0 || id >= tok->sp.GetPieceSize())
		return 1;
	return tok->sp.IsControl(id) || tok->sp.IsUnknown(id);
}

/* Index just past the last whitespace at or before limit, or limit if none. */
static size_t
cut_at_whitespace(const char *text, size_t limit)
{
	for (size_t i = limit; i > limit / 2; i--)
		if (text[i - 1] == ' ' || text[i - 1] == '\n' || text[i - 1] == '\t' || text[i - 1] == '\r')
			return i;
	/* no space nearby: cut before a UTF-8 continuation byte so no character is split */
	while (limit > 0 && (static_cast<unsigned char>(text[limit]) & 0xC0) == 0x80)
		limit--;
	return limit;
}

extern "C" int
pt_tokenizer_encode(const PtTokenizer *tok, const char *text, size_t len,
					int32_t *ids, int max_ids)
{
	try
	{
		/*
		 * A T5 piece never spans whitespace, so encoding a prefix that ends at
		 * whitespace gives exactly the first ids of the whole text.  Start with
		 * a prefix generous enough for typical text (about 4 bytes per token)
		 * and grow it only when it yields too few ids.
		 */
		size_t		prefix = std::min(len, static_cast<size_t>(max_ids) * 16 + 64);
		std::vector<int> out;

		for (;;)
		{
			size_t		cut = prefix < len ? cut_at_whitespace(text, prefix) : len;
			auto		status = tok->sp.Encode(absl::string_view(text, cut), &out);

			if (!status.ok())
			{
				pt_fail(PT_ERR_ARGUMENT, "tokenizer failed: %s", status.ToString().c_str());
				return -1;
			}
			if (cut >= len || out.size() > static_cast<size_t>(max_ids))
				break;
			prefix = std::min(len, prefix * 4);
		}
		int			n = static_cast<int>(std::min(out.size(), static_cast<size_t>(max_ids)));

		for (int i = 0; i < n; i++)
			ids[i] = out[i];
		return n;
	}
	catch (const std::bad_alloc &)
	{
		pt_fail(PT_ERR_NOMEM, "out of memory while tokenizing %zu bytes", len);
		return -1;
	}
	catch (...)
	{
		pt_fail(PT_ERR_INTERNAL, "tokenizer raised an unexpected exception");
		return -1;
	}
}

extern "C" char *
pt_tokenizer_decode(const PtTokenizer *tok, const int32_t *ids, int n)
{
	try
	{
		std::vector<int> in;
		std::string text;
		int			pieces = tok->sp.GetPieceSize();

		for (int i = 0; i < n; i++)
			if (ids[i] >= 0 && ids[i] < pieces)
				in.push_back(ids[i]);
		auto		status = tok->sp.Decode(in, &text);

		if (!status.ok())
		{
			pt_fail(PT_ERR_ARGUMENT, "tokenizer could not decode: %s", status.ToString().c_str());
			return nullptr;
		}
		char	   *out = static_cast<char *>(pt_malloc(text.size() + 1));

		if (out == nullptr)
			return nullptr;
		memcpy(out, text.data(), text.size());
		out[text.size()] = '\0';
		return out;
	}
	catch (const std::bad_alloc &)
	{
		pt_fail(PT_ERR_NOMEM, "out of memory while decoding %d ids", n);
		return nullptr;
	}
	catch (...)
	{
		pt_fail(PT_ERR_INTERNAL, "tokenizer raised an unexpected exception");
		return nullptr;
	}
}
