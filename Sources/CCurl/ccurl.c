#include "ccurl.h"
#include <curl/curl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

static pthread_once_t once = PTHREAD_ONCE_INIT;
static void global_init(void) { curl_global_init(CURL_GLOBAL_DEFAULT); }

typedef struct { char *data; size_t length; } buffer;

static size_t append(char *chunk, size_t size, size_t count, void *target) {
    buffer *b = target;
    size_t n = size * count;
    char *grown = realloc(b->data, b->length + n + 1);
    if (!grown) return 0;  // libcurl then fails the transfer with CURLE_WRITE_ERROR
    memcpy(grown + b->length, chunk, n);
    b->length += n;
    grown[b->length] = 0;
    b->data = grown;
    return n;
}

/// Header lines; a new status line (after a redirect or `100 Continue`) starts over.
static size_t append_header(char *chunk, size_t size, size_t count, void *target) {
    buffer *b = target;
    if (size * count >= 5 && strncmp(chunk, "HTTP/", 5) == 0) b->length = 0;
    return append(chunk, size, count, target);
}

void *ccurl_handle_new(void) {
    pthread_once(&once, global_init);
    return curl_easy_init();
}

void ccurl_handle_free(void *handle) { if (handle) curl_easy_cleanup(handle); }

void ccurl_post(void *handle, const char *url, const char *const *headers, int header_count,
                const char *body, size_t body_length, long timeout_ms, ccurl_response *out) {
    memset(out, 0, sizeof *out);
    CURL *curl = handle;
    buffer received = {0}, header_lines = {0};
    struct curl_slist *list = NULL;
    for (int i = 0; i < header_count; i++) list = curl_slist_append(list, headers[i]);
    list = curl_slist_append(list, "Expect:");  // no `100 Continue` round trip for large bodies
    curl_easy_reset(curl);  // keeps the live connection for reuse
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_POST, 1L);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_length);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, append);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &received);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, append_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &header_lines);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);  // threads: no SIGALRM for timeouts
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, out->error);
    CURLcode code = curl_easy_perform(curl);
    out->curl_code = (int)code;
    if (code != CURLE_OK && out->error[0] == 0) strncpy(out->error, curl_easy_strerror(code), sizeof out->error - 1);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &out->status);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, NULL);
    curl_slist_free_all(list);
    out->body = received.data;
    out->body_length = received.length;
    out->headers = header_lines.data;
    out->headers_length = header_lines.length;
}

void ccurl_response_free(ccurl_response *response) {
    free(response->body);
    free(response->headers);
    response->body = NULL;
    response->headers = NULL;
}
