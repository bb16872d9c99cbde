"""Write ``tests/data/opencv_resize.npz``: random 8-bit images (1 and 3 channels, 1 to 20 pixels
a side, some smooth) and what OpenCV's ``cv::resize(INTER_LINEAR)`` makes of each at a random
size (up and down), the resize Caffe's ImageData layer calls. Needs g++ and OpenCV's headers and
libraries (``../shared/oracle/caffe_data_env.sh`` installs them); the tests only read the file:

    python tests/make_resize_cases.py tests/data/opencv_resize.npz
"""
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

PROGRAM = r"""
#include <opencv2/imgproc.hpp>
#include <cstdio>
#include <cstdlib>
int main(int argc, char** argv) {  // h w c new_h new_w: raw bytes in, raw bytes out
  int h = atoi(argv[1]), w = atoi(argv[2]), c = atoi(argv[3]);
  cv::Mat m(h, w, CV_8UC(c)), r;
  if (fread(m.data, 1, (size_t)h * w * c, stdin) != (size_t)h * w * c) return 1;
  cv::resize(m, r, cv::Size(atoi(argv[5]), atoi(argv[4])));
  fwrite(r.data, 1, r.total() * r.elemSize(), stdout);
}
"""


def main(out, cases=48):
    with tempfile.TemporaryDirectory() as tmp:
        src, exe = Path(tmp) / "resize.cpp", Path(tmp) / "resize"
        src.write_text(PROGRAM)
        subprocess.run(["g++", "-O2", str(src), "-o", str(exe), "-I/usr/include/opencv4",
                        "-lopencv_core", "-lopencv_imgproc"], check=True)
        rng, arrays = np.random.default_rng(2026), {}
        for k in range(cases):
            h, w = (int(v) for v in rng.integers(1, 21, 2))
            nh, nw = (int(v) for v in rng.integers(1, 33, 2))
            c = (1, 3)[k % 2]
            img = rng.integers(0, 256, (h, w, c), dtype=np.uint8)
            if k % 3 == 0:
                img = np.sort(img, axis=1)
            run = subprocess.run([str(exe), str(h), str(w), str(c), str(nh), str(nw)],
                                 input=img.tobytes(), capture_output=True, check=True)
            arrays[f"{k}/image"] = img
            arrays[f"{k}/resized"] = np.frombuffer(run.stdout, np.uint8).reshape(nh, nw, c)
    np.savez_compressed(out, **arrays)


if __name__ == "__main__":
    main(sys.argv[1])
