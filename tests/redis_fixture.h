/* redis_fixture.h - what the Redis tests share to run real redis-server
 * processes on loopback ports: finding the binary, choosing free ports,
 * connecting, waiting until a server answers. Static: include from one test
 * file each. */
#ifndef KVTC_TESTS_REDIS_FIXTURE_H
#define KVTC_TESTS_REDIS_FIXTURE_H

#include <arpa/inet.h>
#include <hiredis/hiredis.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RF_API static __attribute__((unused))

/* 1 if an executable `name` is on PATH. */
RF_API int rf_find_in_path(const char *name) {
    const char *path = getenv("PATH");
    if (!path) path = "/usr/bin:/bin";
    char buf[1024];
    while (*path) {
        size_t n = strcspn(path, ":");
        snprintf(buf, sizeof buf, "%.*s/%s", (int)n, path, name);
        if (access(buf, X_OK) == 0) return 1;
        path += n + (path[n] == ':');
    }
    return 0;
}

RF_API void rf_sleep_ms(int ms) {
    struct timespec t = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

/* n (<= 16) distinct free loopback ports below max_port: the sockets stay
 * bound until all are chosen. 0, or -1. */
RF_API int rf_free_ports(int *out, int n, int max_port) {
    int fds[16];
    int got = 0;
    if (n > 16) return -1;
    for (int tries = 0; got < n && tries < 100; tries++) {
        int fd = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a;
        memset(&a, 0, sizeof a);
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        if (fd < 0) break;
        if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 && getsockname(fd, (struct sockaddr *)&a, &len) == 0 &&
            ntohs(a.sin_port) < max_port) {
            fds[got] = fd;
            out[got++] = ntohs(a.sin_port);
        } else {
            close(fd);
        }
    }
    for (int i = 0; i < got; i++) close(fds[i]);
    return got == n ? 0 : -1;
}

/* A connection to 127.0.0.1:port with a timeout, or NULL. */
RF_API redisContext *rf_connect(int port, int timeout_s) {
    struct timeval tv = {timeout_s, 0};
    redisContext *c = redisConnectWithTimeout("127.0.0.1", port, tv);
    if (c && c->err) { redisFree(c); c = NULL; }
    return c;
}

/* Wait (up to 5 s) until the server on port answers PING with PONG (it
 * refuses commands while loading). 0, or -1. */
RF_API int rf_wait_ready(int port) {
    for (int i = 0; i < 250; i++) {
        redisContext *c = rf_connect(port, 1);
        if (c) {
            redisReply *r = redisCommand(c, "PING");
            int up = r && r->type == REDIS_REPLY_STATUS && !strcmp(r->str, "PONG");
            if (r) freeReplyObject(r);
            redisFree(c);
            if (up) return 0;
        }
        rf_sleep_ms(20);
    }
    return -1;
}

#endif
