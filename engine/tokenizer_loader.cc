#include "engine/tokenizer_loader.h"

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "engine/pre_tokenizer.h"
#include "engine/status_macros.h"

namespace apex4 {
namespace {

using nlohmann::json;

// An optional integer key as a token id; kNoToken when absent.
absl::StatusOr<int32_t> OptionalTokenId(const GgufReader& gguf, const char* key) {
  if (!gguf.HasKey(key)) return kNoToken;
  ASSIGN_OR_RETURN(const int64_t id, gguf.GetInt(key));
  if (id < 0 || id > INT32_MAX) {
    return absl::InvalidArgumentError(absl::StrCat(key, " = ", id, " is not a token id"));
  }
  return static_cast<int32_t>(id);
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream file(path, std::ios::binary);
  if (!file) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::ostringstream contents;
  contents << file.rdbuf();
  return contents.str();
}

absl::StatusOr<json> ParseJsonFile(const std::string& path) {
  ASSIGN_OR_RETURN(const std::string text, ReadFile(path));
  json parsed = json::parse(text, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (parsed.is_discarded()) return absl::InvalidArgumentError(absl::StrCat(path, " is not JSON"));
  return parsed;
}

// Shortened JSON of a value, for error messages.
std::string Excerpt(const json& value) {
  std::string text = value.dump();
  return text.size() > 200 ? text.substr(0, 200) + "..." : text;
}

// Llama-3's split expression, as its tokenizer.json writes it.
constexpr char kLlama3Regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

bool IsByteLevel(const json& pre_tokenizer, bool use_regex) {
  return pre_tokenizer.value("type", "") == "ByteLevel" &&
         !pre_tokenizer.value("add_prefix_space", false) &&
         pre_tokenizer.value("use_regex", true) == use_regex;
}

bool IsLlama3Split(const json& step) {
  return step.value("type", "") == "Split" &&
         step.value("pattern", json::object()).value("Regex", "") == kLlama3Regex &&
         step.value("behavior", "") == "Isolated" && !step.value("invert", false);
}

// The llama.cpp pre-tokenizer name equivalent to tokenizer.json's "pre_tokenizer".
absl::StatusOr<std::string> PreTokenizerName(const json& pre_tokenizer) {
  if (IsByteLevel(pre_tokenizer, /*use_regex=*/true)) return std::string("gpt2");
  if (pre_tokenizer.value("type", "") == "Sequence") {
    const json& steps = pre_tokenizer.value("pretokenizers", json::array());
    if (steps.size() == 2 && steps[0].value("type", "") == "Digits" &&
        steps[0].value("individual_digits", false) && IsByteLevel(steps[1], true)) {
      return std::string("smollm");
    }
    if (steps.size() == 2 && IsLlama3Split(steps[0]) && IsByteLevel(steps[1], false)) {
      return std::string("llama-bpe");
    }
  }
  return absl::UnimplementedError(
      absl::StrCat("tokenizer.json pre_tokenizer is not supported (supported: ByteLevel; single "
                   "Digits then ByteLevel; Llama-3's Split then ByteLevel): ",
                   Excerpt(pre_tokenizer)));
}

// "bos_token" and friends are a string or an AddedToken object with "content".
absl::StatusOr<int32_t> ConfigTokenId(const json& config, const char* key,
                                      const TokenizerSpec& spec) {
  if (!config.contains(key) || config[key].is_null()) return kNoToken;
  const json& value = config[key];
  const std::string text =
      value.is_object() ? value.value("content", "") : value.get<std::string>();
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    if (spec.tokens[id] == text) return static_cast<int32_t>(id);
  }
  return absl::InvalidArgumentError(
      absl::StrCat("tokenizer_config.json ", key, " \"", text, "\" is not in the vocabulary"));
}

// "chat_template" is a string or a list of {"name", "template"}; the one named "default" wins.
std::string ConfigChatTemplate(const json& config) {
  const json& value = config.value("chat_template", json());
  if (value.is_string()) return value.get<std::string>();
  if (value.is_array()) {
    for (const json& entry : value) {
      if (entry.value("name", "") == "default") return entry.value("template", "");
    }
  }
  return "";
}

absl::Status ReadModel(const json& model, TokenizerSpec* spec) {
  if (model.value("type", "") != "BPE") {
    return absl::UnimplementedError(absl::StrCat(
        "tokenizer.json model type \"", model.value("type", ""), "\" is not supported (only BPE)"));
  }
  if (model.value("byte_fallback", false) ||
      !model.value("continuing_subword_prefix", json()).is_null() ||
      !model.value("end_of_word_suffix", json()).is_null()) {
    return absl::UnimplementedError(
        "tokenizer.json BPE options byte_fallback, continuing_subword_prefix and "
        "end_of_word_suffix are not supported");
  }
  spec->ignore_merges = model.value("ignore_merges", false);
  const json& vocab = model.value("vocab", json::object());
  for (const auto& [token, id_value] : vocab.items()) {
    const int64_t id = id_value.get<int64_t>();
    if (id < 0 || id > INT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat("vocab id ", id, " of \"", token, "\""));
    }
    if (spec->tokens.size() <= static_cast<size_t>(id)) spec->tokens.resize(id + 1);
    spec->tokens[id] = token;
  }
  for (const json& merge : model.value("merges", json::array())) {
    if (merge.is_string()) {
      spec->merges.push_back(merge.get<std::string>());
    } else if (merge.is_array() && merge.size() == 2) {
      spec->merges.push_back(
          absl::StrCat(merge[0].get<std::string>(), " ", merge[1].get<std::string>()));
    } else {
      return absl::InvalidArgumentError(absl::StrCat("malformed merge ", Excerpt(merge)));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<TokenizerSpec> SpecFromJson(const json& tokenizer, const json& config) {
  TokenizerSpec spec;
  if (!tokenizer.value("normalizer", json()).is_null()) {
    return absl::UnimplementedError(absl::StrCat("tokenizer.json normalizers are not supported: ",
                                                 Excerpt(tokenizer["normalizer"])));
  }
  ASSIGN_OR_RETURN(spec.pre_tokenizer,
                   PreTokenizerName(tokenizer.value("pre_tokenizer", json::object())));
  RETURN_IF_ERROR(ReadModel(tokenizer.value("model", json::object()), &spec));

  const json& added_tokens = tokenizer.value("added_tokens", json::array());
  for (const json& added : added_tokens) {
    const int64_t id = added.at("id").get<int64_t>();
    if (id < 0 || id > INT32_MAX) {
      return absl::InvalidArgumentError(absl::StrCat("added token id ", id));
    }
    if (spec.tokens.size() <= static_cast<size_t>(id)) spec.tokens.resize(id + 1);
    spec.tokens[id] = added.at("content").get<std::string>();
  }
  // Ids that neither the vocabulary nor the added tokens name stay empty and unused.
  spec.token_types.assign(spec.tokens.size(), TokenType::kNormal);
  for (size_t id = 0; id < spec.tokens.size(); ++id) {
    if (spec.tokens[id].empty()) spec.token_types[id] = TokenType::kUnused;
  }
  for (const json& added : added_tokens) {
    spec.token_types[added["id"].get<int64_t>()] =
        added.value("special", false) ? TokenType::kControl : TokenType::kUserDefined;
  }

  ASSIGN_OR_RETURN(spec.bos_id, ConfigTokenId(config, "bos_token", spec));
  ASSIGN_OR_RETURN(spec.eos_id, ConfigTokenId(config, "eos_token", spec));
  ASSIGN_OR_RETURN(spec.padding_id, ConfigTokenId(config, "pad_token", spec));
  spec.add_bos = config.value("add_bos_token", false);
  spec.chat_template = ConfigChatTemplate(config);
  return spec;
}

}  // namespace

absl::StatusOr<TokenizerSpec> TokenizerSpecFromGguf(const GgufReader& gguf) {
  ASSIGN_OR_RETURN(const std::string model, gguf.GetString("tokenizer.ggml.model"));
  if (model != "gpt2") {
    return absl::UnimplementedError(absl::StrCat("tokenizer.ggml.model \"", model,
                                                 "\" is not supported (only byte-level BPE, "
                                                 "\"gpt2\")"));
  }
  if (!gguf.HasKey("tokenizer.ggml.pre")) {
    return absl::UnimplementedError(
        "tokenizer.ggml.pre is missing; this GGUF predates pre-tokenizer names (reconvert it)");
  }
  TokenizerSpec spec;
  ASSIGN_OR_RETURN(spec.pre_tokenizer, gguf.GetString("tokenizer.ggml.pre"));
  ASSIGN_OR_RETURN(const PreTokenizerKind pre_tokenizer, PreTokenizerFromName(spec.pre_tokenizer));
  // llama.cpp's llama-vocab defaults for Llama-3 vocabularies; add_bos_token below overrides.
  spec.ignore_merges = pre_tokenizer == PreTokenizerKind::kLlama3;
  spec.add_bos = pre_tokenizer == PreTokenizerKind::kLlama3;
  ASSIGN_OR_RETURN(spec.tokens, gguf.GetStringArray("tokenizer.ggml.tokens"));
  ASSIGN_OR_RETURN(spec.merges, gguf.GetStringArray("tokenizer.ggml.merges"));
  if (gguf.HasKey("tokenizer.ggml.token_type")) {
    ASSIGN_OR_RETURN(const std::vector<int64_t> types,
                     gguf.GetIntArray("tokenizer.ggml.token_type"));
    for (int64_t type : types) {
      if (type < 0 || type > static_cast<int64_t>(TokenType::kByte)) {
        return absl::InvalidArgumentError(
            absl::StrCat("tokenizer.ggml.token_type holds unknown type ", type));
      }
      spec.token_types.push_back(static_cast<TokenType>(type));
    }
  }
  ASSIGN_OR_RETURN(spec.bos_id, OptionalTokenId(gguf, "tokenizer.ggml.bos_token_id"));
  ASSIGN_OR_RETURN(spec.eos_id, OptionalTokenId(gguf, "tokenizer.ggml.eos_token_id"));
  ASSIGN_OR_RETURN(spec.eot_id, OptionalTokenId(gguf, "tokenizer.ggml.eot_token_id"));
  ASSIGN_OR_RETURN(spec.padding_id, OptionalTokenId(gguf, "tokenizer.ggml.padding_token_id"));
  if (gguf.HasKey("tokenizer.ggml.add_bos_token")) {
    ASSIGN_OR_RETURN(spec.add_bos, gguf.GetBool("tokenizer.ggml.add_bos_token"));
  }
  if (gguf.HasKey("tokenizer.chat_template")) {
    ASSIGN_OR_RETURN(spec.chat_template, gguf.GetString("tokenizer.chat_template"));
  }
  return spec;
}

absl::StatusOr<Tokenizer> TokenizerFromGguf(const GgufReader& gguf) {
  ASSIGN_OR_RETURN(TokenizerSpec spec, TokenizerSpecFromGguf(gguf));
  return Tokenizer::Create(std::move(spec));
}

absl::StatusOr<TokenizerSpec> TokenizerSpecFromJson(const std::string& tokenizer_json_path) {
  ASSIGN_OR_RETURN(const json tokenizer, ParseJsonFile(tokenizer_json_path));
  const std::filesystem::path config_path =
      std::filesystem::path(tokenizer_json_path).parent_path() / "tokenizer_config.json";
  json config = json::object();
  if (std::filesystem::exists(config_path)) {
    ASSIGN_OR_RETURN(config, ParseJsonFile(config_path.string()));
  }
  // Values of an unexpected JSON type surface as exceptions from the accessors.
  absl::StatusOr<TokenizerSpec> spec;
  try {
    spec = SpecFromJson(tokenizer, config);
  } catch (const json::exception& error) {
    return absl::InvalidArgumentError(
        absl::StrCat(tokenizer_json_path, " is malformed: ", error.what()));
  }
  // Newer transformers versions save the template beside the config instead of inside it.
  const std::filesystem::path template_path = config_path.parent_path() / "chat_template.jinja";
  if (spec.ok() && spec->chat_template.empty() && std::filesystem::exists(template_path)) {
    ASSIGN_OR_RETURN(spec->chat_template, ReadFile(template_path.string()));
  }
  return spec;
}

absl::StatusOr<Tokenizer> TokenizerFromJson(const std::string& tokenizer_json_path) {
  ASSIGN_OR_RETURN(TokenizerSpec spec, TokenizerSpecFromJson(tokenizer_json_path));
  return Tokenizer::Create(std::move(spec));
}

}  // namespace apex4
