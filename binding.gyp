{
  "targets": [
    {
      "target_name": "interprocess",
      "sources": ["native/addon.cc", "native/shm.cc", "native/futex.cc", "native/lifeline.cc", "native/fifo.cc"],
      "cflags_cc": ["-std=c++17", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lrt", "-lpthread"]
    },
    {
      "target_name": "futex_pingpong",
      "type": "executable",
      "sources": ["bench/native/futex_pingpong.c"],
      "cflags": ["-O2", "-Wall"],
      "libraries": ["-lrt", "-lpthread"]
    },
    {
      "target_name": "sync_ref",
      "type": "executable",
      "sources": ["bench/native/sync_ref.c"],
      "cflags": ["-O2", "-Wall"],
      "libraries": ["-lrt", "-lpthread"]
    }
  ]
}
