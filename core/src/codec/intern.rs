//! Shared copies of the names a stream repeats (namespaces, event names).

use std::sync::Arc;

/// A shared copy of `s` from `cache`, added when new. Namespaces and event names repeat
/// millions of times; sharing them saves an allocation per event. The cache is bounded so a
/// server inventing a new name per packet cannot grow it forever.
pub(crate) fn intern(cache: &mut Vec<Arc<str>>, s: &str, limit: usize) -> Arc<str> {
    if let Some(n) = cache.iter().find(|n| &***n == s) {
        return n.clone();
    }
    let n: Arc<str> = Arc::from(s);
    if cache.len() < limit {
        cache.push(n.clone());
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_name_is_shared_until_the_cache_is_full() {
        let mut cache = Vec::new();
        let a = intern(&mut cache, "a", 1);
        assert!(Arc::ptr_eq(&a, &intern(&mut cache, "a", 1)));
        // Past the limit a name is still returned, unshared and not kept.
        let b = intern(&mut cache, "b", 1);
        assert_eq!(&*b, "b");
        assert!(!Arc::ptr_eq(&b, &intern(&mut cache, "b", 1)));
        assert_eq!(cache.len(), 1);
    }
}
