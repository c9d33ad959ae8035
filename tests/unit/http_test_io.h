/* Socket I/O shared by the unit tests' scripted HTTP servers on loopback:
 * write a whole buffer, read one request (headers plus a Content-Length
 * body). Header-only: each test program includes it once. */
#ifndef CAXTON_TESTS_HTTP_TEST_IO_H
#define CAXTON_TESTS_HTTP_TEST_IO_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

/* Sends all of data; stops quietly when the client has gone. */
static void http_test_send_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = send(fd, data, len, MSG_NOSIGNAL);
        if (n <= 0)
            return;
        data += n;
        len -= (size_t)n;
    }
}

/* Reads one request into buf (NUL-terminated, at most size-1 bytes, 5 s per
 * read); *body (may be NULL) points at its body. False if the client left
 * first or the request does not fit. */
static bool http_test_read_request(int fd, char *buf, size_t size, size_t *len, char **body)
{
    *len = 0;
    size_t need = 0;
    while (*len < size - 1) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 5000) <= 0)
            return false;
        ssize_t n = recv(fd, buf + *len, size - 1 - *len, 0);
        if (n <= 0)
            return false;
        *len += (size_t)n;
        buf[*len] = '\0';
        char *end = strstr(buf, "\r\n\r\n");
        if (end && need == 0) {
            char *cl = strcasestr(buf, "\r\ncontent-length:");
            need = (size_t)(end + 4 - buf) + (cl ? strtoul(cl + 17, NULL, 10) : 0);
            if (body)
                *body = end + 4;
        }
        if (need && *len >= need)
            return true;
    }
    return false;
}

#endif
