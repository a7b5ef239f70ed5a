#!/usr/bin/env python3
"""Makes the CLIP tokenizer fixtures by running openai/CLIP's own tokenizer (clip/simple_tokenizer.py).

    git clone https://github.com/openai/CLIP /tmp/clip          # its clip/ folder holds bpe_simple_vocab_16e6.txt.gz
    apt-get install python3-regex
    /usr/bin/python3 tests/Microsoft.ML.Diffusion.Tests/TestData/StableDiffusion/tokenizer/make_tokenizer_fixtures.py \
        --clip /tmp/clip --real-out /tmp/clip-tokenizer

Writes, beside this script:
  tokenizer-small/     a diffusers tokenizer folder (vocab.json, merges.txt, special_tokens_map.json,
                       tokenizer_config.json) with CLIP's byte alphabet and a few hundred of its merges
  expected_small.json  CLIP's SimpleTokenizer, run with that small merge list, on SMALL_PROMPTS
  expected_real.json   CLIP's SimpleTokenizer with its real vocabulary on REAL_PROMPTS
and, in --real-out (not committed: 1 MB of vocabulary and 0.5 MB of merges), the diffusers tokenizer folder of CLIP's
real vocabulary, built as SimpleTokenizer.__init__ builds its encoder; MLDIFFUSION_CLIP_TOKENIZER=<that folder> runs the
real-vocabulary test. The ids are those of Stable Diffusion's tokenizer/ folders (openai/clip-vit-large-patch14's vocabulary).

simple_tokenizer imports ftfy, which Debian 12 lacks: a stand-in whose fix_text is NFC normalization replaces it. The
prompts are clean text, which ftfy's repairs leave as it is, except that ftfy would also straighten the curly quotes
and narrow the fullwidth letters of two of them (see README.md). Expected ids include <|startoftext|> and <|endoftext|>
and are neither truncated nor padded; for a prompt of more than 77 ids, "removed" is CLIP's decoding (stripped) of the
tokens that truncation to 77 drops (it keeps bos, the first 75 tokens, eos). Every prompt is its own html.unescape:
CLIP unescapes HTML entities, transformers' CLIPTokenizer (which diffusers uses) does not, and the library follows diffusers.
"""
import argparse
import gzip
import html
import importlib.util
import json
import os
import sys
import tempfile
import types
import unicodedata

HERE = os.path.dirname(os.path.abspath(__file__))

REAL_PROMPTS = [
    "a photograph of an astronaut riding a horse",
    "A Painting of a FOX, in the Style of Van Gogh!!!",
    "1024x768 wallpaper, 3.5 mm lens, f/1.8, ISO 100, 35mm",
    "don't stop; it's the dog's toy, we're sure they'll've I'm you'd",
    "rock'n'roll at 5 o'clock, 'quoted words' and ''double''",
    "café crème, naïve façade, Ångström in Zürich",
    "cafe\u0301 cre\u0300me (decomposed accents)",
    "a cute cat 🐱 wearing a 🎩, 👩\u200d🚀 astronaut, 👍🏽 thumbs",
    "一只可爱的猫, 日本の風景, 한국어 텍스트",
    "   extra    whitespace\tand\nnew lines\r\n  ",
    "",
    "   ",
    "masterpiece, best quality, (highly detailed:1.2), [sharp focus], {trending on artstation}",
    "<|startoftext|>literal special tokens<|endoftext|> in text <|ENDOFTEXT|>",
    "e-mail @user #hashtag $100 50% a&b c++ x_y ~tilde` ^caret | pipe \\ back",
    "ΟΔΥΣΣΕΥΣ, Σ alone, ΣΑΣ and İstanbul",
    "“curly quotes” and ‘single’ — em dash … ellipsis",
    "𝐁𝐨𝐥𝐝 letters, 𠀀𠀁 ideographs and 𝟙𝟚 digits",
    "it'ſ <|ſtartoftext|> a𝐁b 𐐀x ǅ Ⓐ ΑΣ'Α ΑΣ.Β ΑΣ: a\u0345b",   # case-insensitive literals, case rules, U+0345
    "zero\u200bwidth, non\u00a0breaking, ideographic\u3000space",
    "ＦＵＬＬＷＩＤＴＨ ｔｅｘｔ",
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "a highly detailed digital painting of a majestic ancient castle on a cliff above a stormy sea at sunset, "
    "dramatic lighting, volumetric clouds, crashing waves, seagulls, intricate stonework, glowing windows, "
    "by greg rutkowski and alphonse mucha, trending on artstation, octane render, 8k, ultra sharp focus, "
    "cinematic composition, golden hour, epic fantasy concept art, highly detailed matte painting, 4k wallpaper",
    "red, " * 40 + "café 🐱 end",
]

SMALL_PROMPTS = [
    "a photograph of an astronaut riding a horse",
    "The Cat and the Dog, in a garden!",
    "1024x768, f/1.8 and 3.5",
    "don't it's we're",
    "café 🐱 猫",
    "  Extra   SPACES\tand\nlines  ",
    "",
    "a photograph of a cat and a dog in the garden with an astronaut riding a horse at night, " * 4,
    "a " * 75,                             # 77 ids: fits exactly
    "a " * 76,                             # 78 ids: one token dropped
]

# Words whose merges the small vocabulary does not take from the prompts, so they split into smaller pieces than CLIP's.
PARTIAL_PROMPT = "xylophone quartz zebra"

FIRST_MERGES = 300   # the small vocabulary: this many of CLIP's first merges, plus those SMALL_PROMPTS use


def load_simple_tokenizer(clip):
    """clip/simple_tokenizer.py as a module, with an ftfy stand-in (NFC) and without clip/__init__ (which imports torch)."""
    ftfy = types.ModuleType("ftfy")
    ftfy.fix_text = lambda text: unicodedata.normalize("NFC", text)
    sys.modules["ftfy"] = ftfy
    path = os.path.join(clip, "clip", "simple_tokenizer.py")
    spec = importlib.util.spec_from_file_location("clip_simple_tokenizer", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def merges_by_rank(tokenizer):
    return [pair for pair, _ in sorted(tokenizer.bpe_ranks.items(), key=lambda kv: kv[1])]


def write_folder(tokenizer, folder, pad_token="<|endoftext|>"):
    """A diffusers tokenizer/ folder, as transformers' CLIPTokenizer.save_pretrained writes Stable Diffusion 1.x's."""
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        f.write(json.dumps(tokenizer.encoder, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n")
        for first, second in merges_by_rank(tokenizer):
            f.write(f"{first} {second}\n")
    def special(content):
        return {"content": content, "lstrip": False, "normalized": True, "rstrip": False, "single_word": False}
    with open(os.path.join(folder, "special_tokens_map.json"), "w", encoding="utf-8") as f:
        json.dump({"bos_token": special("<|startoftext|>"), "eos_token": special("<|endoftext|>"),
                   "pad_token": pad_token, "unk_token": special("<|endoftext|>")}, f, indent=2)
        f.write("\n")
    with open(os.path.join(folder, "tokenizer_config.json"), "w", encoding="utf-8") as f:
        json.dump({"add_prefix_space": False, "bos_token": dict(special("<|startoftext|>"), __type="AddedToken"),
                   "do_lower_case": True, "eos_token": dict(special("<|endoftext|>"), __type="AddedToken"),
                   "errors": "replace", "model_max_length": 77, "pad_token": pad_token,
                   "tokenizer_class": "CLIPTokenizer", "unk_token": dict(special("<|endoftext|>"), __type="AddedToken")},
                  f, indent=2)
        f.write("\n")


def expected(tokenizer, prompts, max_length=77):
    bos, eos = tokenizer.encoder["<|startoftext|>"], tokenizer.encoder["<|endoftext|>"]
    cases = []
    for prompt in prompts:
        assert html.unescape(prompt) == prompt, f"{prompt!r} holds an HTML entity, which CLIP and diffusers read differently"
        ids = [bos] + tokenizer.encode(prompt) + [eos]
        case = {"prompt": prompt, "ids": ids}
        if len(ids) > max_length:
            case["removed"] = tokenizer.decode(ids[max_length - 1:-1]).strip()
        cases.append(case)
    return cases


def write_json(path, value):
    with open(path, "w", encoding="utf-8") as f:
        json.dump(value, f, indent=1, ensure_ascii=False)
        f.write("\n")


class RecordingRanks(dict):
    """bpe_ranks that remembers each merge SimpleTokenizer.bpe applies (it asks `bigram not in bpe_ranks` before each)."""
    def __init__(self, ranks):
        super().__init__(ranks)
        self.applied = set()

    def __contains__(self, pair):
        found = super().__contains__(pair)
        if found:
            self.applied.add(pair)
        return found


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", required=True, help="a checkout of openai/CLIP (the folder holding clip/)")
    parser.add_argument("--real-out", default="/tmp/clip-tokenizer", help="where to write the real vocabulary's tokenizer folder")
    parser.add_argument("--out", default=HERE, help="where to write the committed fixtures (default: beside this script)")
    args = parser.parse_args()

    simple = load_simple_tokenizer(args.clip)
    real = simple.SimpleTokenizer()      # CLIP's own bpe_simple_vocab_16e6.txt.gz
    assert len(real.encoder) == 49408 and real.encoder["<|endoftext|>"] == 49407
    write_folder(real, args.real_out)
    write_json(os.path.join(args.out, "expected_real.json"), {"vocabulary": "openai/CLIP bpe_simple_vocab_16e6", "cases": expected(real, REAL_PROMPTS)})

    # The merges the small prompts need (as CLIP's real tokenizer applies them) and CLIP's first merges, in CLIP's order.
    merges = merges_by_rank(real)
    recording = RecordingRanks(real.bpe_ranks)
    real.bpe_ranks = recording
    real.cache = {"<|startoftext|>": "<|startoftext|>", "<|endoftext|>": "<|endoftext|>"}
    for prompt in SMALL_PROMPTS:
        real.encode(prompt)
    kept = set(merges[:FIRST_MERGES]) | recording.applied
    small_merges = [m for m in merges if m in kept]
    with tempfile.TemporaryDirectory() as temp:
        gz = os.path.join(temp, "bpe_small.txt.gz")
        with gzip.open(gz, "wt", encoding="utf-8") as f:
            # SimpleTokenizer skips the first line and splits at newlines: no newline at the end
            f.write("\n".join(["small CLIP merge list"] + [f"{a} {b}" for a, b in small_merges]))
        small = simple.SimpleTokenizer(bpe_path=gz)
    assert len(small.bpe_ranks) == len(small_merges)
    write_folder(small, os.path.join(args.out, "tokenizer-small"))
    write_json(os.path.join(args.out, "expected_small.json"), {"vocabulary": f"tokenizer-small ({len(small_merges)} of CLIP's merges)", "cases": expected(small, SMALL_PROMPTS + [PARTIAL_PROMPT])})
    print(f"{len(REAL_PROMPTS)} real-vocabulary cases, {len(SMALL_PROMPTS) + 1} small-vocabulary cases ({len(small_merges)} merges); "
          f"real tokenizer folder in {args.real_out}")


if __name__ == "__main__":
    main()
