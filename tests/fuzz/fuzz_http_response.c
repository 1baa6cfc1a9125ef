/* vigil fuzz target: bytes as a server's response to the HTTP client's parser, fed whole and at
 * random split points (the two must agree), plus the client's URL parser on the first line. */
#include "http_client.h"
#include "http_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void transcript(const uint8_t *d, size_t n, uint32_t seed, bool no_body, char *out,
                       size_t outlen)
{
        static const struct vg_http_limits limits = { .max_header_bytes = 2048, .max_body = 8192 };
        struct vg_http_parser *p;
        size_t off = 0, o = 0;

        if (vg_http_parser_new(VG_HTTP_KIND_RESPONSE, &limits, &p) < 0)
                abort();
        if (no_body)
                vg_http_parser_set_no_body(p);
        out[0] = '\0';
        while (off <= n && o < outlen - 200) {
                size_t piece = n - off, used;
                if (seed) {
                        seed = seed * 1103515245u + 12345u;
                        piece = (seed >> 16) % 5;
                        if (piece > n - off)
                                piece = n - off;
                }
                enum vg_http_parse_result r = vg_http_parser_feed(p, d + off, piece, &used);
                if (used > piece)
                        abort();
                off += used;
                if (r == VG_HTTP_PARSE_DONE) {
                        struct vg_http_message *m = vg_http_parser_take(p);
                        uint32_t h = 2166136261u;
                        for (size_t i = 0; i < m->body_len; i++)
                                h = (h ^ m->body[i]) * 16777619u;
                        o += (size_t)snprintf(out + o, outlen - o, "M %d %zu %zu %08x %d|",
                                              m->status, m->n_headers, m->body_len, h,
                                              m->keep_alive);
                        vg_http_message_free(m);
                        if (no_body)
                                vg_http_parser_set_no_body(p);
                } else if (r == VG_HTTP_PARSE_ERROR) {
                        const char *msg;
                        int st = vg_http_parser_error(p, &msg);
                        o += (size_t)snprintf(out + o, outlen - o, "E %d %s", st, msg);
                        break;
                } else if (r == VG_HTTP_PARSE_AGAIN && off == n) {
                        enum vg_http_parse_result f = vg_http_parser_finish(p);
                        if (f == VG_HTTP_PARSE_DONE) {
                                struct vg_http_message *m = vg_http_parser_take(p);
                                o += (size_t)snprintf(out + o, outlen - o, "EOF %zu",
                                                      m ? m->body_len : 0);
                                vg_http_message_free(m);
                        } else {
                                o += (size_t)snprintf(out + o, outlen - o, "A %d", f);
                        }
                        break;
                }
        }
        vg_http_parser_free(p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        static char a[16384], b[16384];
        struct vg_http_url url;
        char line[512];

        if (size < 2)
                return 0;
        bool no_body = data[0] & 1;
        transcript(data + 2, size - 2, 0, no_body, a, sizeof(a));
        transcript(data + 2, size - 2, ((uint32_t)data[0] << 8 | data[1]) | 1, no_body, b,
                   sizeof(b));
        if (strcmp(a, b) != 0) {
                fprintf(stderr, "whole: %s\nsplit: %s\n", a, b);
                abort();
        }

        size_t n = 0;
        while (n < size - 2 && data[2 + n] != '\r' && data[2 + n] != '\n' && data[2 + n] != '\0')
                n++;
        if (n < sizeof(line)) {
                memcpy(line, data + 2, n);
                line[n] = '\0';
                if (vg_http_url_parse(line, &url, NULL) == 0) {
                        if (!url.target || url.target[0] != '/' || url.port == 0)
                                abort();
                        vg_http_url_clear(&url);
                }
        }
        return 0;
}
