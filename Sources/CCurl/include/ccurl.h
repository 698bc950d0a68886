// Blocking HTTP POST over libcurl's easy interface (apt: libcurl4-openssl-dev), for the
// OpenAI-compatible backend. One handle per in-flight request; a handle keeps its connection
// for the next request. Swift cannot call curl_easy_setopt (variadic), hence this shim.
#pragma once
#include <stddef.h>

typedef struct {
    long status;          // HTTP status of the final response (0 if none arrived)
    char *body;           // response body (malloc'd, NUL-terminated), or NULL
    size_t body_length;
    char *headers;        // raw header lines of the final response (malloc'd), or NULL
    size_t headers_length;
    int curl_code;        // CURLcode: 0 on success, 28 on timeout
    char error[256];      // libcurl's message when curl_code != 0
} ccurl_response;

/// A new handle, or NULL when libcurl cannot make one.
void *ccurl_handle_new(void);
void ccurl_handle_free(void *handle);

/// POSTs `body` to `url` with `header_count` "Name: value" lines; the whole request (connect to
/// last byte) must finish within `timeout_ms`. Fills `out`; free it with `ccurl_response_free`.
void ccurl_post(void *handle, const char *url, const char *const *headers, int header_count,
                const char *body, size_t body_length, long timeout_ms, ccurl_response *out);

void ccurl_response_free(ccurl_response *response);
