{
  "variables": { "memq_cflags": ["-O3", "-std=c++17", "-fexceptions", "-fPIC"] },
  "targets": [
    {
      "target_name": "memq_avx2",
      "type": "static_library",
      "sources": ["<!@(node scripts/gyp-sources.js avx2)"],
      "include_dirs": ["native/core/include"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["<@(memq_cflags)", "-mavx2", "-mfma", "-mf16c"]
    },
    {
      "target_name": "memq_avx512",
      "type": "static_library",
      "sources": ["<!@(node scripts/gyp-sources.js avx512)"],
      "include_dirs": ["native/core/include"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["<@(memq_cflags)", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx2", "-mfma", "-mf16c"]
    },
    {
      "target_name": "memq_avx512dp",
      "type": "static_library",
      "sources": ["<!@(node scripts/gyp-sources.js avx512dp)"],
      "include_dirs": ["native/core/include"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["<@(memq_cflags)", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512bf16", "-mavx512vnni", "-mavx2", "-mfma", "-mf16c"]
    },
    {
      "target_name": "memq_core",
      "type": "static_library",
      "dependencies": ["memq_avx2", "memq_avx512", "memq_avx512dp"],
      "sources": ["<!@(node scripts/gyp-sources.js generic)"],
      "include_dirs": ["native/core/include"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["<@(memq_cflags)"]
    },
    {
      "target_name": "memq",
      "dependencies": ["memq_core"],
      "sources": ["<!@(node scripts/gyp-sources.js addon)"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native/core/include"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL", "NODE_ADDON_API_DISABLE_DEPRECATED", "MEMQ_BUILD_SYSTEM=\"node-gyp\""],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
      "cflags_cc": ["<@(memq_cflags)"],
      "libraries": ["-lpthread"]
    }
  ],
  "conditions": [
    ["'<!(node -p \"require('fs').existsSync('native/bench_addon') ? 'yes' : 'no'\")'=='yes'", {
      "targets": [
        {
          "target_name": "memq_bench",
          "dependencies": ["memq_core"],
          "sources": ["<!@(node scripts/gyp-sources.js bench)"],
          "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native/core/include", "native/addon"],
          "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_CPP_EXCEPTIONS_ALL", "NODE_ADDON_API_DISABLE_DEPRECATED"],
          "cflags_cc!": ["-fno-exceptions", "-fno-rtti"],
          "cflags_cc": ["<@(memq_cflags)"],
          "libraries": ["-lpthread"]
        }
      ]
    }]
  ]
}
