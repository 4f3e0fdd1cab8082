// wgsl_reflect 1.6.0's `main` is CommonJS inside a `"type": "module"` package, so Node ESM cannot import the
// package root. We import its ES module build directly and re-export the package's own types for it.
declare module 'wgsl_reflect/wgsl_reflect.module.js' {
  export * from 'wgsl_reflect';
}
