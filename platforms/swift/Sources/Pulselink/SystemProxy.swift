// The proxy iOS and macOS are set to use (Settings > Wi-Fi > Configure Proxy, or an MDM
// profile), as a `ProxyConfig` for `ClientConfig(proxy:)`. The core never reads system
// settings itself: the app decides, and can show the user which proxy is in use.
#if canImport(CFNetwork)
import CFNetwork
import Foundation

extension ProxyConfig {
    /// The system's proxy for connections to `url` (`ws(s)://` is looked up as `http(s)://`),
    /// or `nil` when the system goes direct. Manual HTTP, HTTPS and SOCKS proxies are
    /// returned; an automatic configuration (PAC) script is not evaluated here, so a PAC-only
    /// setup returns `nil` — resolve it with `CFNetworkExecuteProxyAutoConfigurationURL` and
    /// build the `ProxyConfig` from its answer. Credentials kept by the system are not
    /// readable by apps: pass them as `username`/`password` if the proxy asks for them.
    public static func system(for url: URL) -> ProxyConfig? {
        guard let settings = CFNetworkCopySystemProxySettings()?.takeRetainedValue() else { return nil }
        var components = URLComponents(url: url, resolvingAgainstBaseURL: false)
        switch components?.scheme {
        case "ws": components?.scheme = "http"
        case "wss": components?.scheme = "https"
        default: break
        }
        guard let lookup = components?.url else { return nil }
        let found = CFNetworkCopyProxiesForURL(lookup as CFURL, settings).takeRetainedValue()
        guard let proxies = (found as NSArray) as? [[String: Any]] else { return nil }
        let none = kCFProxyTypeNone as String
        let http = kCFProxyTypeHTTP as String
        let https = kCFProxyTypeHTTPS as String
        let socks = kCFProxyTypeSOCKS as String
        for proxy in proxies {
            guard let type = proxy[kCFProxyTypeKey as String] as? String else { continue }
            if type == none { return nil }
            guard let host = proxy[kCFProxyHostNameKey as String] as? String,
                  let port = proxy[kCFProxyPortNumberKey as String] as? Int
            else { continue }
            let scheme: String
            if type == http || type == https {
                scheme = "http"
            } else if type == socks {
                scheme = "socks5h"
            } else {
                continue
            }
            let shown = host.contains(":") ? "[\(host)]" : host
            return ProxyConfig(url: "\(scheme)://\(shown):\(port)")
        }
        return nil
    }
}
#endif
