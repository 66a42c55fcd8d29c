#include "tests/unit/runtime/runtime_test_util.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <sstream>

namespace padlock::runtime::testing {

absl::StatusOr<std::string> HttpGet(int port, std::string_view path, absl::Duration timeout) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return absl::InternalError(std::string("socket: ") + std::strerror(errno));
  timeval tv = absl::ToTimeval(timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<uint16_t>(port));
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    ::close(fd);
    return absl::UnavailableError("nothing listens on port " + std::to_string(port));
  }
  const std::string request =
      "GET " + std::string(path) + " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return absl::UnavailableError("cannot send the request");
  }
  std::string response;
  char buf[8192];
  while (true) {
    const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      ::close(fd);
      return absl::DeadlineExceededError("no complete answer");
    }
    if (n == 0) break;
    response.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  const size_t header_end = response.find("\r\n\r\n");
  if (header_end == std::string::npos) return absl::InternalError("malformed HTTP answer");
  const std::string status_line = response.substr(0, response.find("\r\n"));
  if (status_line.find(" 200") == std::string::npos) {
    return absl::InternalError("HTTP answer: " + status_line);
  }
  return response.substr(header_end + 4);
}

namespace {

// Parses `a="x",b="y"` (with \\, \" and \n escapes) into a map; false when malformed.
bool ParseLabels(std::string_view text, std::map<std::string, std::string>* labels) {
  size_t i = 0;
  while (i < text.size()) {
    const size_t eq = text.find('=', i);
    if (eq == std::string_view::npos || eq + 1 >= text.size() || text[eq + 1] != '"') return false;
    std::string name(text.substr(i, eq - i));
    std::string value;
    size_t j = eq + 2;
    for (; j < text.size() && text[j] != '"'; ++j) {
      if (text[j] == '\\' && j + 1 < text.size()) {
        ++j;
        value.push_back(text[j] == 'n' ? '\n' : text[j]);
      } else {
        value.push_back(text[j]);
      }
    }
    if (j >= text.size()) return false;
    (*labels)[name] = value;
    i = j + 1;
    if (i < text.size() && text[i] == ',') ++i;
  }
  return true;
}

}  // namespace

std::optional<double> MetricValue(std::string_view exposition, std::string_view name,
                                  const std::map<std::string, std::string>& labels) {
  std::istringstream in{std::string(exposition)};
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::string_view view(line);
    if (!view.starts_with(name)) continue;
    view.remove_prefix(name.size());
    std::map<std::string, std::string> found;
    if (!view.empty() && view.front() == '{') {
      const size_t close = view.rfind('}');
      if (close == std::string_view::npos) continue;
      if (!ParseLabels(view.substr(1, close - 1), &found)) continue;
      view.remove_prefix(close + 1);
    }
    if (view.empty() || view.front() != ' ') continue;  // a longer metric name
    if (found != labels) continue;
    const std::string number(view.substr(1, view.find(' ', 1) == std::string_view::npos
                                                ? std::string_view::npos
                                                : view.find(' ', 1) - 1));
    char* end = nullptr;
    const double value = std::strtod(number.c_str(), &end);
    if (end == number.c_str()) continue;
    return value;
  }
  return std::nullopt;
}

namespace {

class JsonParser {
 public:
  explicit JsonParser(std::string_view text) : text_(text) {}

  std::optional<std::map<std::string, std::string>> ParseTopLevelObject() {
    std::map<std::string, std::string> members;
    SkipSpace();
    if (!Consume('{')) return std::nullopt;
    SkipSpace();
    if (!Consume('}')) {
      while (true) {
        SkipSpace();
        std::string key;
        if (!ParseString(&key)) return std::nullopt;
        SkipSpace();
        if (!Consume(':')) return std::nullopt;
        SkipSpace();
        std::string value;
        if (Peek() == '"') {
          if (!ParseString(&value)) return std::nullopt;
        } else {
          const size_t start = pos_;
          if (!ParseValue()) return std::nullopt;
          value = std::string(text_.substr(start, pos_ - start));
        }
        members[key] = value;
        SkipSpace();
        if (Consume(',')) continue;
        if (Consume('}')) break;
        return std::nullopt;
      }
    }
    SkipSpace();
    if (pos_ != text_.size()) return std::nullopt;
    return members;
  }

 private:
  char Peek() const { return pos_ < text_.size() ? text_[pos_] : '\0'; }
  bool Consume(char c) {
    if (Peek() != c || pos_ >= text_.size()) return false;
    ++pos_;
    return true;
  }
  void SkipSpace() {
    while (pos_ < text_.size() &&
           (text_[pos_] == ' ' || text_[pos_] == '\t' || text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool ParseLiteral(std::string_view word) {
    if (text_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }
  bool ParseValue() {
    const char c = Peek();
    if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++pos_;
      SkipSpace();
      if (Consume(close)) return true;
      while (true) {
        SkipSpace();
        if (c == '{') {
          std::string key;
          if (!ParseString(&key)) return false;
          SkipSpace();
          if (!Consume(':')) return false;
          SkipSpace();
        }
        if (!ParseValue()) return false;
        SkipSpace();
        if (Consume(',')) continue;
        return Consume(close);
      }
    }
    if (c == '"') {
      std::string ignored;
      return ParseString(&ignored);
    }
    if (c == 't') return ParseLiteral("true");
    if (c == 'f') return ParseLiteral("false");
    if (c == 'n') return ParseLiteral("null");
    return ParseNumber();
  }
  bool ParseNumber() {
    const auto digits = [&] {
      const size_t start = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      return pos_ > start;
    };
    Consume('-');
    if (Peek() == '0') {
      ++pos_;
    } else if (!digits()) {
      return false;
    }
    if (Consume('.') && !digits()) return false;
    if (Peek() == 'e' || Peek() == 'E') {
      ++pos_;
      if (Peek() == '+' || Peek() == '-') ++pos_;
      if (!digits()) return false;
    }
    return true;
  }
  bool ParseHex4(uint32_t* out) {
    if (pos_ + 4 > text_.size()) return false;
    *out = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = text_[pos_++];
      *out <<= 4;
      if (c >= '0' && c <= '9') *out |= static_cast<uint32_t>(c - '0');
      else if (c >= 'a' && c <= 'f') *out |= static_cast<uint32_t>(c - 'a' + 10);
      else if (c >= 'A' && c <= 'F') *out |= static_cast<uint32_t>(c - 'A' + 10);
      else return false;
    }
    return true;
  }
  static void AppendUtf8(std::string* out, uint32_t cp) {
    if (cp < 0x80) {
      out->push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
      out->push_back(static_cast<char>(0xC0 | (cp >> 6)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
      out->push_back(static_cast<char>(0xE0 | (cp >> 12)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
      out->push_back(static_cast<char>(0xF0 | (cp >> 18)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
      out->push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
  }
  bool ParseString(std::string* out) {
    if (!Consume('"')) return false;
    while (pos_ < text_.size()) {
      const unsigned char c = static_cast<unsigned char>(text_[pos_++]);
      if (c == '"') return true;
      if (c < 0x20) return false;  // raw control characters are not allowed
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        continue;
      }
      if (pos_ >= text_.size()) return false;
      const char e = text_[pos_++];
      switch (e) {
        case '"': out->push_back('"'); break;
        case '\\': out->push_back('\\'); break;
        case '/': out->push_back('/'); break;
        case 'b': out->push_back('\b'); break;
        case 'f': out->push_back('\f'); break;
        case 'n': out->push_back('\n'); break;
        case 'r': out->push_back('\r'); break;
        case 't': out->push_back('\t'); break;
        case 'u': {
          uint32_t cp = 0;
          if (!ParseHex4(&cp)) return false;
          if (cp >= 0xD800 && cp <= 0xDBFF) {
            uint32_t low = 0;
            if (!ParseLiteral("\\u") || !ParseHex4(&low) || low < 0xDC00 || low > 0xDFFF) {
              return false;
            }
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return false;
          }
          AppendUtf8(out, cp);
          break;
        }
        default:
          return false;
      }
    }
    return false;
  }

  std::string_view text_;
  size_t pos_ = 0;
};

}  // namespace

std::optional<std::map<std::string, std::string>> ParseJsonObject(std::string_view text) {
  return JsonParser(text).ParseTopLevelObject();
}

double ScrapeValue(int port, std::string_view name,
                   const std::map<std::string, std::string>& labels) {
  absl::StatusOr<std::string> body = HttpGet(port, "/metrics");
  if (!body.ok()) return -1;
  return MetricValue(*body, name, labels).value_or(0);
}

}  // namespace padlock::runtime::testing
