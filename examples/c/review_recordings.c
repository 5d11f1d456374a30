/*
 * review_recordings.c: check a server's session recordings from C.
 *
 * Every terminal channel of a privileged session is recorded as asciicast
 * v2, and every RDP session's PDUs, hash-chained in chunks and sealed by a
 * manifest signed with the server's key. This program lists the recordings
 * of a data dir, verifies each one (file, chain, signature) and prints the
 * events of those that hold. A recording that was edited, cut or appended
 * to fails with CPAM_RECORDING and a message naming what is wrong.
 *
 * An RDP recording has no text events: cpam_recording_read gives its
 * desktop's size and length ("desktop"), and with --frame the desktop at
 * SECONDS (or at its end, if it is shorter) is written to DIR/<id>.png by
 * cpam_recording_frame (free the bytes with cpam_bytes_free), and the
 * client's keys and mouse, decoded from its input PDUs, are printed by
 * cpam_recording_input.
 *
 * The answers are JSON (free them with cpam_string_free); a real program
 * would parse them with a JSON library. This one only picks a few out.
 *
 * Usage: review_recordings [--frame SECONDS DIR] DATA_DIR [TEXT_TO_SEARCH]
 * Exit status: 0 when every recording verifies, 1 otherwise, 2 on errors.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cpam.h"

/* Where --frame writes RDP frames (NULL: none), and at what time. */
static const char *frame_dir = NULL;
static double frame_at = 0;

static int fail(const char *what, cpam_status status) {
    char message[512];
    size_t len = 0;
    cpam_last_error_message(message, sizeof message, &len);
    fprintf(stderr, "%s failed: %s: %s\n", what, cpam_status_name(status), message);
    return 2;
}

/* Copies the value of the next `"id":"..."` after `*cursor` into `id`. */
static int next_id(const char **cursor, char *id, size_t size) {
    const char *key = strstr(*cursor, "\"id\":\"");
    if (key == NULL) {
        return 0;
    }
    const char *start = key + strlen("\"id\":\"");
    const char *end = strchr(start, '"');
    if (end == NULL || (size_t)(end - start) >= size) {
        return 0;
    }
    memcpy(id, start, (size_t)(end - start));
    id[end - start] = '\0';
    *cursor = end;
    return 1;
}

/* Writes the desktop of RDP recording `id` (read as `json`) at frame_at,
 * or at its end, to frame_dir/<id>.png. */
static int write_frame(const char *data_dir, const char *id, const char *json) {
    const char *duration = strstr(json, "\"duration\":");
    double at = frame_at;
    if (duration != NULL) {
        double end = strtod(duration + strlen("\"duration\":"), NULL);
        if (at > end) {
            at = end;
        }
    }
    uint8_t *png = NULL;
    size_t len = 0;
    cpam_status st = cpam_recording_frame(data_dir, id, at, &png, &len);
    if (st != CPAM_OK) {
        return fail("cpam_recording_frame", st);
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.png", frame_dir, id);
    FILE *out = fopen(path, "wb");
    size_t written = out != NULL ? fwrite(png, 1, len, out) : 0;
    int ok = out != NULL && written == len && fclose(out) == 0;
    cpam_bytes_free(png, len);
    if (!ok) {
        perror(path);
        return 2;
    }
    printf("%s frame at %.3f s: %s (%zu bytes)\n", id, at, path, len);

    char *input = NULL;
    st = cpam_recording_input(data_dir, id, &input);
    if (st != CPAM_OK) {
        return fail("cpam_recording_input", st);
    }
    printf("%s input: %s\n", id, input);
    cpam_string_free(input);
    return 0;
}

int main(int argc, char **argv) {
    if (argc > 3 && strcmp(argv[1], "--frame") == 0) {
        frame_at = strtod(argv[2], NULL);
        frame_dir = argv[3];
        argv += 3;
        argc -= 3;
    }
    if (argc < 2) {
        fprintf(stderr, "usage: %s [--frame SECONDS DIR] DATA_DIR [TEXT_TO_SEARCH]\n", argv[0]);
        return 2;
    }
    const char *data_dir = argv[1];

    char *list = NULL;
    cpam_status st = cpam_recordings_list(data_dir, NULL, &list);
    if (st != CPAM_OK) {
        return fail("cpam_recordings_list", st);
    }
    int broken = 0;
    const char *cursor = list;
    char id[128];
    while (next_id(&cursor, id, sizeof id)) {
        char *verified = NULL;
        st = cpam_recording_verify(data_dir, id, &verified);
        if (st == CPAM_RECORDING) {
            char message[512];
            size_t len = 0;
            cpam_last_error_message(message, sizeof message, &len);
            printf("%s: DOES NOT VERIFY: %s\n", id, message);
            broken = 1;
            continue;
        }
        if (st != CPAM_OK) {
            cpam_string_free(list);
            return fail("cpam_recording_verify", st);
        }
        printf("%s: %s\n", id, verified);
        cpam_string_free(verified);

        char *events = NULL;
        st = cpam_recording_read(data_dir, id, &events);
        if (st != CPAM_OK) {
            cpam_string_free(list);
            return fail("cpam_recording_read", st);
        }
        printf("%s events: %s\n", id, events);
        if (frame_dir != NULL && strstr(events, "\"desktop\":{") != NULL) {
            int failed = write_frame(data_dir, id, events);
            if (failed) {
                cpam_string_free(events);
                cpam_string_free(list);
                return failed;
            }
        }
        cpam_string_free(events);
    }
    cpam_string_free(list);

    if (argc > 2) {
        char *hits = NULL;
        st = cpam_recordings_search(data_dir, argv[2], &hits);
        if (st != CPAM_OK) {
            return fail("cpam_recordings_search", st);
        }
        printf("search %s: %s\n", argv[2], hits);
        cpam_string_free(hits);
    }
    return broken;
}
