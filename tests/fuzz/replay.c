/* vigil: run a libFuzzer target over every file of a corpus directory without libFuzzer, so
 * that each regular build replays the seeds and every crash ever found (kept as a corpus file). */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay_file(const char *path)
{
        FILE *f = fopen(path, "rb");
        uint8_t *buf;
        long size;

        if (!f || fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 || fseek(f, 0, SEEK_SET)) {
                fprintf(stderr, "%s: %s\n", path, strerror(errno));
                if (f)
                        fclose(f);
                return -1;
        }
        buf = malloc((size_t)size + 1);
        if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
                fprintf(stderr, "%s: short read\n", path);
                free(buf);
                fclose(f);
                return -1;
        }
        fclose(f);
        LLVMFuzzerTestOneInput(buf, (size_t)size);
        free(buf);
        return 0;
}

int main(int argc, char **argv)
{
        int files = 0, failed = 0;

        for (int i = 1; i < argc; i++) {
                DIR *d = opendir(argv[i]);
                struct dirent *de;

                if (!d) {
                        failed += replay_file(argv[i]) < 0;
                        files++;
                        continue;
                }
                while ((de = readdir(d))) {
                        char path[4096];
                        if (de->d_name[0] == '.')
                                continue;
                        snprintf(path, sizeof(path), "%s/%s", argv[i], de->d_name);
                        failed += replay_file(path) < 0;
                        files++;
                }
                closedir(d);
        }
        printf("replayed %d inputs, %d unreadable\n", files, failed);
        return failed || files == 0 ? 1 : 0;
}
