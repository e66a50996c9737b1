{
  "variables": {
    # portable=1 (GYP_DEFINES, set by scripts/prebuild.js) makes a prebuild that loads on any
    # glibc the official Node binaries run on (2.28+): see native/portable.cc.
    "portable%": 0
  },
  "targets": [
    {
      "target_name": "interprocess",
      "sources": ["native/addon.cc", "native/shm.cc", "native/futex.cc", "native/lifeline.cc", "native/fifo.cc", "native/mq.cc", "native/copyout.cc"],
      "cflags_cc": ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-cast-function-type"],
      "libraries": ["-lrt", "-lpthread"],
      "conditions": [
        ["portable==1", {
          "sources": ["native/portable.cc"],
          "cflags_cc": ["-include", "<(module_root_dir)/native/portable.h"]
        }]
      ]
    }
  ]
}
