/*
 * forward_service.c: reach a customer's service through cpam from C.
 *
 * A vendor's Connection Manager profile (`cpam-server profile export`) binds
 * one user to one customer gatekeeper. With it, this program:
 *
 *   1. lists the services the user may use now,
 *   2. opens a session to SERVICE as a byte stream it writes to and reads
 *      from itself (no local socket involved),
 *   3. tries services it must not reach (no grant, or refused by the
 *      server's access hook), and shows that each refusal arrives as
 *      CPAM_PERMISSION_DENIED with a message,
 *   4. opens a local forward (what `cpam-connect forward` does) and talks
 *      through it with a plain TCP socket, as an ssh or RDP client would,
 *   5. starts the platform's remote desktop client on that forward
 *      (Desktop Sharing, what `cpam-connect desktop` does).
 *
 * SERVICE is expected to echo what it receives (the tests point it at a TCP
 * echo server in the customer's network).
 *
 * Usage: forward_service PROFILE SERVICE [DENIED_SERVICE...]
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cpam.h"

static int fail(const char *what, cpam_status status) {
    char message[512];
    size_t len = 0;
    cpam_last_error_message(message, sizeof message, &len);
    fprintf(stderr, "%s failed: %s: %s\n", what, cpam_status_name(status), message);
    return 1;
}

/* Reads from the stream until `want` bytes arrived or the target closed. */
static cpam_status read_exactly(const cpam_stream *s, uint8_t *buf, size_t want, size_t *got) {
    *got = 0;
    while (*got < want) {
        size_t n = 0;
        cpam_status st = cpam_stream_read(s, buf + *got, want - *got, 10000, &n);
        if (st != CPAM_OK) {
            return st;
        }
        if (n == 0) {
            break; /* end of stream */
        }
        *got += n;
    }
    return CPAM_OK;
}

/* 2. One session as a stream. */
static int echo_over_stream(const cpam_profile *profile, const char *service) {
    cpam_stream *stream = NULL;
    cpam_status st = cpam_profile_open_stream(profile, service, &stream);
    if (st != CPAM_OK) {
        return fail("cpam_profile_open_stream", st);
    }
    int rc = 1;
    const char hello[] = "hello through cpam\n";
    uint8_t back[sizeof hello];
    size_t got = 0;
    if ((st = cpam_stream_write(stream, (const uint8_t *)hello, strlen(hello), 10000)) != CPAM_OK) {
        fail("cpam_stream_write", st);
    } else if ((st = read_exactly(stream, back, strlen(hello), &got)) != CPAM_OK) {
        fail("cpam_stream_read", st);
    } else if (got != strlen(hello) || memcmp(back, hello, got) != 0) {
        fprintf(stderr, "the echo came back wrong (%zu bytes)\n", got);
    } else {
        printf("stream echoed: %.*s", (int)got, (const char *)back);
        /* Half-close: the target sees end of stream and closes its side. */
        if ((st = cpam_stream_shutdown(stream)) != CPAM_OK) {
            fail("cpam_stream_shutdown", st);
        } else if ((st = read_exactly(stream, back, 1, &got)) != CPAM_OK || got != 0) {
            fprintf(stderr, "expected end of stream after shutdown\n");
        } else {
            printf("stream closed by the target\n");
            rc = 0;
        }
    }
    /* Freeing the stream ends the session on the server. */
    cpam_stream_free(stream);
    return rc;
}

/* 3. A service we must not reach: the server refuses the session. */
static int expect_refusal(const cpam_profile *profile, const char *service) {
    cpam_stream *stream = NULL;
    cpam_status st = cpam_profile_open_stream(profile, service, &stream);
    if (st == CPAM_OK) {
        fprintf(stderr, "%s was not refused\n", service);
        cpam_stream_free(stream);
        return 1;
    }
    char message[512];
    size_t len = 0;
    cpam_last_error_message(message, sizeof message, &len);
    /* `stream` was not written: out-parameters are written only on success. */
    printf("refused: %s (%d): %s\n", cpam_status_name(st), (int)st, message);
    return st == CPAM_PERMISSION_DENIED && stream == NULL ? 0 : 1;
}

/* 5. Desktop Sharing: the platform's remote desktop client (xfreerdp,
 * mstsc, open rdp://) started on the forward, as `cpam-connect desktop`
 * does; this call returns when the client exits. A machine without one
 * gets CPAM_NOT_FOUND and a message naming the address to connect to. */
static int launch_desktop(const cpam_forward *forward) {
    const char *args[] = {"/cert:ignore"};
    int code = -1;
    cpam_status st = cpam_forward_launch_desktop(forward, NULL, args, 1, &code);
    if (st == CPAM_NOT_FOUND) {
        char message[512];
        size_t len = 0;
        cpam_last_error_message(message, sizeof message, &len);
        printf("no desktop client: %s\n", message);
        return 0;
    }
    if (st != CPAM_OK) {
        return fail("cpam_forward_launch_desktop", st);
    }
    printf("desktop client exited with %d\n", code);
    return code == 0 ? 0 : 1;
}

/* 4. A local forward, used through an ordinary socket. */
static int echo_over_forward(const cpam_profile *profile, const char *service) {
    cpam_forward *forward = NULL;
    cpam_status st = cpam_profile_forward(profile, service, "127.0.0.1:0", &forward);
    if (st != CPAM_OK) {
        return fail("cpam_profile_forward", st);
    }
    char addr[64];
    size_t len = 0;
    if ((st = cpam_forward_local_addr(forward, addr, sizeof addr, &len)) != CPAM_OK) {
        cpam_forward_free(forward);
        return fail("cpam_forward_local_addr", st);
    }
    printf("forwarding %s on %s\n", service, addr);
    int rc = 1;
    char *colon = strrchr(addr, ':');
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)atoi(colon + 1));
    *colon = '\0';
    inet_pton(AF_INET, addr, &sa.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) {
        const char ping[] = "ping over a forward\n";
        char back[sizeof ping];
        size_t got = 0;
        if (write(fd, ping, strlen(ping)) == (ssize_t)strlen(ping)) {
            while (got < strlen(ping)) {
                ssize_t n = read(fd, back + got, strlen(ping) - got);
                if (n <= 0) {
                    break;
                }
                got += (size_t)n;
            }
        }
        if (got == strlen(ping) && memcmp(back, ping, got) == 0) {
            printf("forward echoed: %.*s", (int)got, back);
            rc = 0;
        } else {
            fprintf(stderr, "the forward did not echo (%zu bytes)\n", got);
        }
    } else {
        perror("connect");
    }
    if (fd >= 0) {
        close(fd);
    }
    rc |= launch_desktop(forward);
    /* Stops listening and ends the forward's sessions. */
    cpam_forward_free(forward);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: %s PROFILE SERVICE [DENIED_SERVICE...]\n", argv[0]);
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    cpam_profile *profile = NULL;
    cpam_status st = cpam_profile_load(argv[1], &profile);
    if (st != CPAM_OK) {
        return fail("cpam_profile_load", st);
    }

    /* 1. The services, as JSON; the string is ours to free. */
    char *services = NULL;
    if ((st = cpam_profile_services(profile, &services)) != CPAM_OK) {
        cpam_profile_free(profile);
        return fail("cpam_profile_services", st);
    }
    printf("services: %s\n", services);
    cpam_string_free(services);

    int rc = echo_over_stream(profile, argv[2]);
    for (int i = 3; i < argc; i++) {
        rc |= expect_refusal(profile, argv[i]);
    }
    rc |= echo_over_forward(profile, argv[2]);
    cpam_profile_free(profile);
    printf(rc == 0 ? "all good\n" : "something failed\n");
    return rc;
}
