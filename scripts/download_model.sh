#!/usr/bin/env bash
# download_model.sh - fetch a Hugging Face T5 checkpoint for ptune.
#
# Downloads config.json, spiece.model and model.safetensors (or, for sharded
# checkpoints, model.safetensors.index.json and every shard it names) from
# $HF_ENDPOINT/MODEL_ID/resolve/REVISION/FILE into DEST_DIR.  Each file goes
# to FILE.part first and is renamed only once complete and of the size the
# Hugging Face API lists, so an interrupted run resumes where it stopped and a
# directory never holds a truncated checkpoint under its real name.
#
# Run with --help for usage.  Needs curl and jq.
set -euo pipefail

usage() {
  cat <<'EOF'
usage: scripts/download_model.sh MODEL_ID DEST_DIR

Downloads a T5 checkpoint from Hugging Face into DEST_DIR (created if needed):
config.json, spiece.model and model.safetensors, or the shards listed in
model.safetensors.index.json when the model is sharded.  Sizes are checked
against the Hugging Face API; run the same command again to resume an
interrupted download.

Known-good model ids:
  t5-small  t5-base
  google/t5-v1_1-small  google/t5-v1_1-base
  google/flan-t5-small  google/flan-t5-base  google/flan-t5-large

Environment:
  HF_TOKEN     access token, for gated or private models
  HF_ENDPOINT  base URL (default https://huggingface.co), e.g. a mirror
  HF_REVISION  branch, tag, commit or PR ref (default main), e.g. refs/pr/1
               for a repository whose safetensors conversion is still a PR

example:
  scripts/download_model.sh google/flan-t5-small ~/models/flan-t5-small
  build/ptune info ~/models/flan-t5-small
EOF
}

die() {
  echo "download_model: $*" >&2
  exit 1
}

if [[ $# -ge 1 && ( $1 == -h || $1 == --help ) ]]; then
  usage
  exit 0
fi
if [[ $# -ne 2 ]]; then
  usage >&2
  exit 2
fi

model=$1
dest=$2
endpoint=${HF_ENDPOINT:-https://huggingface.co}
endpoint=${endpoint%/}
revision=${HF_REVISION:-main}

# The id and revision become URL paths: refuse anything that could climb out.
[[ $model =~ ^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$ && $model != *..* ]] ||
  die "\"$model\" is not a Hugging Face model id (like google/flan-t5-small)"
[[ $revision =~ ^[A-Za-z0-9._/-]+$ && $revision != *..* ]] ||
  die "HF_REVISION=\"$revision\" is not a branch, tag, commit or PR ref"
# A ref such as refs/pr/1 is one path segment in the URL, so its slashes are escaped.
revision_url=${revision//\//%2F}

for tool in curl jq; do
  command -v "$tool" >/dev/null || die "$tool is required (apt-get install $tool)"
done

mkdir -p "$dest"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The token goes in a header file, not on curl's command line, where other
# users could read it with ps.  curl drops it when redirected to another host
# (the CDN that serves large files), which is what we want.
curl_opts=(-L --fail --retry 3)
if [[ -n ${HF_TOKEN:-} ]]; then
  (umask 077 && printf 'Authorization: Bearer %s\n' "$HF_TOKEN" > "$work/auth")
  curl_opts+=(-H "@$work/auth")
fi
if [[ -t 2 ]]; then
  curl_opts+=(--progress-bar)
else
  curl_opts+=(--silent --show-error)
fi

file_size() {
  stat -c %s "$1" 2>/dev/null || stat -f %z "$1"
}

# The API lists each file with its size.  For files in Git LFS (the weights)
# lfs.size is the size of the real file, so it is preferred to size, which may
# be that of the LFS pointer.
listing="$work/tree.json"
api_url="$endpoint/api/models/$model/tree/$revision_url"
echo "listing $api_url"
rc=0
code=$(curl "${curl_opts[@]}" -o "$listing" -w '%{http_code}' "$api_url" 2> "$work/curl.err") || rc=$?
if [[ $rc -ne 0 ]]; then
  [[ $code == 000 ]] && cat "$work/curl.err" >&2
  case $code in
    401|403) die "access to $model was refused (HTTP $code): it is gated or private; set HF_TOKEN to a token allowed to read it" ;;
    404) die "$model (revision $revision) was not found at $endpoint (a private model needs HF_TOKEN)" ;;
    *) die "could not list the files of $model from $api_url (curl exit $rc, HTTP $code)" ;;
  esac
fi
jq -e 'type == "array"' "$listing" >/dev/null 2>&1 ||
  die "$api_url did not return a JSON file list"

# Expected size of a file from the listing, or nothing if it is not listed.
expected_size() {
  jq -r --arg p "$1" '.[] | select(.path == $p) | (.lfs.size // .size)
    | select(type == "number") | tostring' "$listing" | head -n 1
}

# Downloads one file.  Returns 0 when it is in place, 4 when the model has no
# such file (not in the listing, or HTTP 404 should the listing be wrong); any
# other failure ends the script through die, since set -e does not apply
# inside a function called as "fetch x || ...".
fetch() {
  local name=$1
  local url="$endpoint/$model/resolve/$revision_url/$name"
  local target="$dest/$name"
  local part="$target.part"
  local expected have code rc

  expected=$(expected_size "$name")
  if [[ -z $expected ]]; then
    echo "$name: not in the file list of $model"
    return 4
  fi
  if [[ -f $target && $(file_size "$target") == "$expected" ]]; then
    echo "$name: already complete ($expected bytes)"
    return 0
  fi

  have=0
  [[ -f $part ]] && have=$(file_size "$part")
  if [[ $have -gt $expected ]]; then
    echo "$name: $part is larger than the $expected bytes expected; starting over"
    rm -f "$part"
    have=0
  fi
  if [[ $have == "$expected" && -f $part ]]; then
    echo "$name: $part is already complete"
  else
    if [[ $have -gt 0 ]]; then
      echo "$name: resuming at byte $have of $expected from $url"
    else
      echo "$name: downloading $expected bytes from $url"
    fi
    rc=0
    code=$(curl "${curl_opts[@]}" -C - -o "$part" -w '%{http_code}' "$url") || rc=$?
    if [[ $rc -ne 0 ]]; then
      # curl may leave an empty .part behind; a partial one is kept to resume.
      [[ -f $part && ! -s $part ]] && rm -f "$part"
      if [[ $code == 404 ]]; then
        echo "$name: listed, but the server answered 404"
        return 4
      fi
      if [[ $rc -eq 33 ]]; then
        die "$url: the server cannot resume a download; delete $part and run again"
      fi
      die "downloading $url failed (curl exit $rc, HTTP $code); run again to resume"
    fi
  fi

  [[ -f $part ]] || : > "$part"  # curl creates no file for an empty body
  have=$(file_size "$part")
  if [[ $have != "$expected" ]]; then
    die "$name: downloaded $have bytes but $model lists $expected; $part is kept, run again to resume (or delete it to start over)"
  fi
  mv -f "$part" "$target" || die "could not rename $part to $target"
  echo "$name: done ($have bytes)"
}

echo "downloading $model (revision $revision) into $dest"

fetch config.json || die "$model has no config.json: is it a model repository?"

fetch spiece.model ||
  die "$model has no spiece.model (the sentencepiece tokenizer ptune needs); it may ship only tokenizer.json, which ptune cannot read: use one of the known-good models (--help)"

rc=0
fetch model.safetensors || rc=$?
if [[ $rc -ne 0 && $rc -ne 4 ]]; then
  die "model.safetensors: download failed"
elif [[ $rc -eq 4 ]]; then
  echo "looking for a sharded checkpoint instead"
  rc=0
  fetch model.safetensors.index.json || rc=$?
  if [[ $rc -ne 0 && $rc -ne 4 ]]; then
    die "model.safetensors.index.json: download failed"
  elif [[ $rc -eq 4 ]]; then
    hint=""
    if [[ -n $(expected_size pytorch_model.bin) ]]; then
      hint=" It has only pytorch_model.bin; a safetensors conversion may exist as a pull request on the model page: download it with HF_REVISION=refs/pr/N."
    fi
    die "$model has neither model.safetensors nor model.safetensors.index.json at revision $revision.$hint"
  fi
  index="$dest/model.safetensors.index.json"
  shards=$(jq -r '.weight_map | [.[]] | unique | .[]' "$index") ||
    die "$index has no weight_map"
  [[ -n $shards ]] || die "$index lists no shards"
  # Shard names come from the network: only plain file names are accepted.
  while IFS= read -r shard; do
    [[ $shard =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] ||
      die "$index names a shard \"$shard\" that is not a plain file name"
  done <<< "$shards"
  while IFS= read -r shard; do
    fetch "$shard" || die "$model lists the shard $shard in its index, but it was not found"
  done <<< "$shards"
fi

echo "done: $dest holds $model; check it with: build/ptune info $dest"
